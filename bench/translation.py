"""6. Translation cost, in-process: translate N routes from scratch, and apply one
route change at 10k through the control loop's own path, and one EndpointSlice change
(an endpoint added or removed: the most frequent watch event in Kubernetes) at 3000.

The configuration is the scale benchmark's: namespaces of 100 HTTPRoutes, each
with its own Service and EndpointSlice. "From scratch" is `translate(snapshot)`
plus building every Envoy resource (`portico.xds.resources.build`). The
incremental path is `ControlLoop.sync()` after one HTTPRoute's path changed (or
one EndpointSlice's endpoints) in the store: snapshot, translate, compare the IR, push to an `XdsServer` (build,
hash and pack what changed; no Envoy connected) and write statuses; its
parts are timed separately. Each figure is the median of `repeat` runs; the
baseline is the from-scratch translation of the smallest size.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench import manifests as m
from bench.common import Report, ratio

TARGET_CHANGE_MS = 20.0
PER_NS = 100


def documents(routes: int) -> list[dict[str, Any]]:
    docs = m.gateway_docs()
    for n in range((routes + PER_NS - 1) // PER_NS):
        ns = f"ns{n:03d}"
        docs.append(m.namespace_doc(ns))
        for i in range(min(PER_NS, routes - n * PER_NS)):
            docs += m.service_docs(f"svc{i}", ns, 8080)
            docs.append(m.http_route(f"r{i}", ns, m.hostname(i, ns), [(f"svc{i}", 1)]))
    return docs


def snapshot(routes: int) -> Any:
    from portico.models import parse_object
    from portico.translator import Placement, Snapshot

    objects = {}
    for i, doc in enumerate(documents(routes)):
        meta = doc["metadata"]
        meta.update(creationTimestamp=f"2026-01-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
                    uid=f"uid-{i}", generation=1)
        obj = parse_object(doc)
        objects[obj.key] = obj
    return Snapshot(objects, {(m.GATEWAY_NS, m.GATEWAY_NAME): Placement("127.10.0.1")})


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, list[float]]:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), runs


def from_scratch(routes: int, repeat: int) -> dict[str, Any]:
    from portico.translator import translate
    from portico.xds.resources import build

    snap = snapshot(routes)
    translate_s, translate_runs = timed(lambda: translate(snap), repeat)
    ir = translate(snap).ir
    build_s, build_runs = timed(lambda: build(ir), repeat)
    return {"routes": routes, "translate_s": translate_s, "build_s": build_s, "translate_runs": translate_runs,
            "build_runs": build_runs}


def one_change(routes: int, repeat: int, what: str = "route") -> dict[str, Any]:
    """ControlLoop.sync() after one HTTPRoute (`what` "route") or one EndpointSlice
    ("slice": a second endpoint added, then removed, in turn) changed, with its parts timed."""
    from portico.control import ControlLoop
    from portico.infra.addresses import AddressPool
    from portico.infra.host import HostInfrastructure
    from portico.objects import key_of
    from portico.provider import Document, ProviderEvent, Source
    from portico.provider.apiserver import APIServerEmulation
    from portico.store import Store
    from portico.translator import translate
    from portico.xds.server import XdsServer

    docs = documents(routes)
    api = APIServerEmulation()  # validation, defaulting and metadata, as in `portico run`
    store = Store(next_resource_version=api.next_resource_version)
    t0 = time.perf_counter()
    store.apply(api.admit(ProviderEvent(tuple(Document(key_of(d), d, Source("bench.yaml", 1)) for d in docs),
                                        initial=True)))
    load_s = time.perf_counter() - t0
    parts: dict[str, list[float]] = {"translate": [], "push": []}

    def timed_translate(snap: Any) -> Any:
        t = time.perf_counter()
        out = translate(snap)
        parts["translate"].append(time.perf_counter() - t)
        return out

    class TimedXds(XdsServer):
        def update(self, group: str, ir: Any) -> int:
            t = time.perf_counter()
            version = super().update(group, ir)
            parts["push"].append(time.perf_counter() - t)
            return version

    infra = HostInfrastructure(AddressPool("127.10.0.0/24", in_use=set))
    xds = TimedXds()
    loop = ControlLoop(store, infra, xds, translator=timed_translate)
    t0 = time.perf_counter()
    loop.sync()
    first_s = time.perf_counter() - t0
    for key in parts:
        parts[key].clear()
    route = next(d for d in docs if d["kind"] == "HTTPRoute")
    eps = next(d for d in docs if d["kind"] == "EndpointSlice")
    patches = loop._memo.patches
    totals: list[float] = []
    apply_s: list[float] = []
    for k in range(repeat):
        changed = {**route, "spec": {**route["spec"], "rules": [
            {**route["spec"]["rules"][0], "matches": [{"path": {"type": "PathPrefix", "value": f"/v{k + 1}"}}]}]}}
        if what == "slice":  # a pod comes, a pod goes
            changed = {**eps, "endpoints": eps["endpoints"] + (
                [{"addresses": [f"127.0.1.{k % 200 + 1}"], "conditions": {"ready": True}}] if k % 2 == 0 else [])}
        t0 = time.perf_counter()
        store.apply(api.admit(ProviderEvent((Document(key_of(changed), changed, Source("bench.yaml", 1)),))))
        t1 = time.perf_counter()
        loop.sync()
        totals.append(time.perf_counter() - t1)
        apply_s.append(t1 - t0)
    total = statistics.median(totals)
    translate_s = statistics.median(parts["translate"])
    push_s = statistics.median(parts["push"])
    return {"routes": routes, "what": what, "patched": loop._memo.patches - patches,
            "store_load_s": load_s, "first_sync_s": first_s, "total_s": total,
            "translate_s": translate_s, "push_s": push_s, "store_apply_s": statistics.median(apply_s),
            "rest_s": total - translate_s - push_s, "runs": totals, "versions": xds.version("portico")}


def run(sizes: list[int], repeat: int, slice_routes: int = 3000) -> Report:
    report = Report("translation", "6. Translation cost (in-process, median of "
                    f"{repeat} runs)", ["routes", "path", "total ms", "translate ms", "xDS build/push ms",
                                        "other ms", "x baseline"])
    scratch = [from_scratch(n, repeat) for n in sizes]
    base = scratch[0]["translate_s"] + scratch[0]["build_s"]
    for r in scratch:
        total = r["translate_s"] + r["build_s"]
        report.rows.append([r["routes"], "from scratch", total * 1e3, r["translate_s"] * 1e3, r["build_s"] * 1e3,
                            0.0, ratio(total, base)])
    change = one_change(max(sizes), repeat)
    eps = one_change(min(slice_routes, max(sizes)), repeat, "slice")
    for c, path in ((change, "one route changed"), (eps, "one EndpointSlice changed")):
        report.rows.append([c["routes"], f"{path} (ControlLoop.sync, {c['patched']}/{repeat} patched)",
                            c["total_s"] * 1e3, c["translate_s"] * 1e3, c["push_s"] * 1e3, c["rest_s"] * 1e3,
                            ratio(c["total_s"], base)])
    report.data = {"from_scratch": scratch, "one_change": change, "one_slice_change": eps, "baseline_s": base}
    ms = change["total_s"] * 1e3
    report.target(f"one route change at {change['routes']:,} routes, translated and pushed",
                  f"< {TARGET_CHANGE_MS:g} ms", ms, ms < TARGET_CHANGE_MS)
    big = scratch[-1]
    report.summary = (f"{big['routes']:,} routes from scratch {(big['translate_s'] + big['build_s']):.2f} s "
                      f"({ratio(big['translate_s'] + big['build_s'], base):.1f}x {sizes[0]:,}); one change at "
                      f"{change['routes']:,}: {ms:.0f} ms (translate {change['translate_s'] * 1e3:.0f}, "
                      f"push {change['push_s'] * 1e3:.0f}, status and rest {change['rest_s'] * 1e3:.0f}); "
                      f"one EndpointSlice change at {eps['routes']:,}: {eps['total_s'] * 1e3:.1f} ms")
    return report


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(prog="python -m bench translation", description=__doc__)
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--slice-routes", type=int, default=3000, help="routes for the EndpointSlice change")
    parser.add_argument("--quick", action="store_true", help="sizes 500,2000; 2 runs")
    args = parser.parse_args(argv)
    sizes = [500, 2000] if args.quick else [int(s) for s in args.sizes.split(",")]
    report = run(sizes, 2 if args.quick else args.repeat, args.slice_routes)
    report.emit()
    return report


if __name__ == "__main__":
    main()
