"""3. Attached routes: `count` HTTPRoutes created at once, time until the Gateway
reports attachedRoutes: count; then all deleted at once, time until 0. Twice:
as `count` files written in a burst (each write a separate event the watcher
sees arrive over time: the writing itself is part of the time), and as one file
holding them all (one atomic write, as one `kubectl apply -f`).

The Gateway is polled through the admin API every `poll_ms`; a publication is
a new Gateway resourceVersion (the store bumps it on every status write), so
the count of publications is what a watcher polling that often would see. The
baseline is the same cycle with a single route in the same run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench import manifests as m
from bench.common import Echo, Portico, Report, attached_routes, ratio, render, running, wait_until, workdir, write_docs

TARGET_SETUP_S = 1.0


def cycle(portico: Portico, routes_dir: Path, count: int, poll_ms: float, timeout: float,
          one_file: bool = False) -> dict[str, Any]:
    """Create `count` routes (a file each, or one List file), wait for attachedRoutes == count;
    delete them, wait for 0."""
    out: dict[str, Any] = {"routes": count, "one_file": one_file}
    # rendered before the clock starts
    texts = [render([m.as_list(m.routes(count))])] if one_file else [render([r]) for r in m.routes(count)]
    for phase, target in (("create", count), ("delete", 0)):
        seen: list[tuple[float, str, int]] = []
        start = time.monotonic()
        if phase == "create":
            for i, text in enumerate(texts):
                write_docs(routes_dir / f"r{i}.yaml", text)
        else:
            for i in range(len(texts)):
                (routes_dir / f"r{i}.yaml").unlink()
        written = time.monotonic() - start

        def reached(target: int = target, seen: list[tuple[float, str, int]] = seen, start: float = start) -> bool:
            gw = portico.gateway()
            version = gw["metadata"]["resourceVersion"]
            attached = attached_routes(gw.get("status") or {})
            if not seen or seen[-1][1] != version:
                seen.append((time.monotonic() - start, version, attached))
            return attached == target

        wait_until(f"attachedRoutes {target}", reached, timeout, poll_ms / 1e3)
        out[phase] = {"seconds": seen[-1][0], "write_seconds": written, "publications": len(seen) - 1,
                      "attached_seen": [a for _, _, a in seen]}
    return out



def run(count: int, poll_ms: float) -> Report:
    report = Report("attached", f"3. Attached routes ({count} created at once, then deleted)",
                    ["routes", "phase", "seconds", "of which writing s", "x 1 route", "publications",
                     "attachedRoutes seen"])
    with workdir("attached") as root:
        echo = Echo(root, "echo")
        manifests_dir = root / "manifests"
        write_docs(manifests_dir / "00-gateway.yaml", m.gateway_docs())
        write_docs(manifests_dir / "10-backend.yaml", m.service_docs("echo", "default", echo.port))
        routes_dir = manifests_dir / "routes"
        routes_dir.mkdir()
        portico = Portico(root, manifests_dir)
        with running(echo, portico):
            portico.wait_ready()
            portico.wait_programmed(0)
            base = cycle(portico, routes_dir, 1, poll_ms, 60)
            time.sleep(0.5)
            big = cycle(portico, routes_dir, count, poll_ms, 60 + count * 0.05)
            time.sleep(0.5)
            single = cycle(portico, routes_dir, count, poll_ms, 60 + count * 0.05, one_file=True)
            stats = portico.stats()
    for r in (base, big, single):
        label = f"{r['routes']:,} " + ("in one file" if r["one_file"] else "files" if r["routes"] > 1 else "file")
        for phase in ("create", "delete"):
            p = r[phase]
            seen = p["attached_seen"]
            shown = " -> ".join(str(a) for a in seen) if len(seen) <= 6 else \
                f"{seen[0]} -> ... ({len(seen) - 2} more) -> {seen[-1]}"
            report.rows.append([label, phase, p["seconds"], p["write_seconds"],
                                ratio(p["seconds"], base[phase]["seconds"]), p["publications"], shown])
    report.data = {"baseline": base, "run": big, "one_file": single, "poll_ms": poll_ms, **stats}
    setup, atomic = big["create"]["seconds"], single["create"]["seconds"]
    report.target(f"attachedRoutes: {count} after writing {count} route files in a burst", f"< {TARGET_SETUP_S:g} s",
                  setup, setup < TARGET_SETUP_S)
    report.target(f"attachedRoutes: {count} after writing {count} routes in one file", f"< {TARGET_SETUP_S:g} s",
                  atomic, atomic < TARGET_SETUP_S)
    report.summary = (f"{count} routes attached in {setup:.2f} s as {count} files (writing them took "
                      f"{big['create']['write_seconds']:.2f} s), {atomic:.2f} s in one file "
                      f"({ratio(atomic, base['create']['seconds']):.1f}x one route); detached in "
                      f"{big['delete']['seconds']:.2f} s; {big['create']['publications']}+"
                      f"{big['delete']['publications']} Gateway status publications")
    return report


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(prog="python -m bench attached", description=__doc__)
    parser.add_argument("--routes", type=int, default=1000)
    parser.add_argument("--poll-ms", type=float, default=10)
    parser.add_argument("--quick", action="store_true", help="200 routes")
    args = parser.parse_args(argv)
    report = run(200 if args.quick else args.routes, args.poll_ms)
    report.emit()
    return report


if __name__ == "__main__":
    main()
