"""`python -m bench [--quick] [--docs] [NAME...]`: run the benchmarks (all by default).

Each prints its table, its targets and one SUMMARY line, and writes
bench/results/<name>.json; at the end every summary and target is repeated and
bench/results/summary.json is written. `--docs` also rewrites the results
section of docs/benchmarks.md from the JSON files. One benchmark alone:
`python -m bench.NAME [--quick] [options]` (see `--help`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback

from bench.common import RESULTS_DIR, fmt, machine

BENCHMARKS = ("propagation", "changes", "attached", "scale", "traffic", "translation", "groups", "kube_sync",
              "coldstart", "kube_propagation", "security")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes and short runs (a few minutes)")
    parser.add_argument("--docs", action="store_true", help="rewrite the results section of docs/benchmarks.md")
    args = parser.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    started = time.monotonic()
    summaries: dict[str, dict[str, object]] = {}
    failed: list[str] = []
    for name in names:
        t0 = time.monotonic()
        try:
            module = importlib.import_module(f"bench.{name}")
            report = module.main(["--quick"] if args.quick else [])
            summaries[name] = {"summary": report.summary, "targets": report.targets,
                               "seconds": time.monotonic() - t0}
        except Exception:  # one failing benchmark does not hide the others' results
            traceback.print_exc()
            failed.append(name)
            summaries[name] = {"summary": "FAILED", "targets": [], "seconds": time.monotonic() - t0}
    total = time.monotonic() - started
    print(f"\n# Summary ({'quick' if args.quick else 'full'} run, {total / 60:.1f} min)\n")
    for name, s in summaries.items():
        print(f"{name}: {s['summary']}")
        for t in s["targets"]:  # type: ignore[attr-defined]
            print(f"  {'MET   ' if t['met'] else 'MISSED'} {t['target']} ({t['goal']}): {fmt(t['value'])}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "summary.json").write_text(json.dumps(
        {"quick": args.quick, "minutes": total / 60, "machine": machine(), "benchmarks": summaries}, indent=2,
        default=str))
    if args.docs:
        from bench.docs import write_docs

        print(f"wrote {write_docs()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
