"""Where the control plane's memory per object goes, in-process (issue 30 item 6).

The scale benchmark's manifests (`namespaces` x `per_ns` HTTPRoutes, each with its own
Service and EndpointSlice, one List file per namespace) are loaded as `portico run`
loads them (FileProvider -> APIServerEmulation -> Store, across the bulk worker
processes) and translated once (the control loop: translator, IR, statuses; no xDS
server), every stage kept alive as in the running process. Printed: the Python heap
that stays allocated afterwards by allocating module (tracemalloc, one frame; the
workers' results are allocated by the unpickling: "pickle"/"connection.py"), or with
`--rss` no tracemalloc, the process's RSS and pymalloc's arenas. Not a timing
benchmark; the RSS of a real `portico run` is `bench.scale`'s.

    python -m bench.heap [--namespaces 50] [--routes-per-namespace 100] [--top 25] [--rss]
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

from bench import manifests as m
from bench.common import write_docs
from bench.scale import namespace_docs


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def where(filename: str) -> str:
    """A short name for the module that allocated (portico's own by path, others by package)."""
    parts = Path(filename).parts
    if "portico" in parts:
        return "/".join(parts[parts.index("portico"):])
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    return Path(filename).name


def pymalloc() -> str:
    """pymalloc's arenas in use and the bytes in its allocated blocks (sys._debugmallocstats)."""
    import os
    import sys

    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        os.dup2(out.fileno(), 2)  # (it prints to the C stderr)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")
    wanted = ("# arenas allocated current", "# bytes in allocated blocks", "# bytes in available blocks",
              "Total")
    return "; ".join(" ".join(line.split()) for line in text.splitlines() if line.startswith(wanted))


def run(namespaces: int, per_ns: int, top: int, rss_only: bool = False) -> dict[str, Any]:
    # (imported before the measure: imports are the baseline)
    from portico.infra.addresses import AddressPool
    from portico.infra.host import HostInfrastructure
    from portico.provider.apiserver import APIServerEmulation
    from portico.provider.bulk import BulkPool
    from portico.provider.files import FileProvider
    from portico.runtime import translate_once
    from portico.store import Store
    from portico.validation import compile_all

    with tempfile.TemporaryDirectory(prefix="portico-heap-") as tmp:
        root = Path(tmp)
        write_docs(root / "00-gateway.yaml", m.gateway_docs())
        for i in range(namespaces):
            ns = f"ns{i:03d}"
            write_docs(root / f"{ns}.yaml", [m.as_list(namespace_docs(ns, per_ns, 8080, 0))])
        bulk = BulkPool()
        compile_all()
        bulk.start()
        gc.collect()
        rss_before = rss_mib()
        if not rss_only:
            tracemalloc.start(1)
        provider = FileProvider([str(root)], pool=bulk)
        emulation = APIServerEmulation(provider, pool=bulk)
        store = Store()
        store.apply(emulation.admit(provider.scan()))
        done = translate_once(store, HostInfrastructure(AddressPool(in_use=set)))
        gc.collect()
        rss_after = rss_mib()
        bulk.close()
        if rss_only:
            print(f"{len(store):,} objects: RSS {rss_before:.0f} -> {rss_after:.0f} MiB; pymalloc: {pymalloc()}")
            return {"objects": len(store), "rss_before_mib": rss_before, "rss_after_mib": rss_after}
        snapshot = tracemalloc.take_snapshot()
        tracemalloc.stop()
    objects = len(done.store)
    by_module: Counter[str] = Counter()
    for stat in snapshot.statistics("filename"):
        by_module[where(stat.traceback[0].filename)] += stat.size
    total = sum(by_module.values())
    print(f"{objects:,} objects: {total / 2**20:.1f} MiB of Python heap ({total / objects / 1024:.2f} KiB per object);"
          f" RSS {rss_before:.0f} -> {rss_after:.0f} MiB (tracemalloc's own bookkeeping included)")
    for name, size in by_module.most_common(top):
        print(f"  {size / 2**20:8.2f} MiB  {name}")
    del done, provider, emulation
    return {"objects": objects, "heap_mib": total / 2**20, "by_module": dict(by_module)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.heap", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--routes-per-namespace", type=int, default=100)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--rss", action="store_true", help="no tracemalloc: RSS and pymalloc's arenas")
    args = parser.parse_args(argv)
    run(args.namespaces, args.routes_per_namespace, args.top, args.rss)


if __name__ == "__main__":
    main()
