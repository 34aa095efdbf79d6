"""Produce Portico's conformance report: upstream's ConformanceReport YAML
(docs/conformance-report.yaml, the format implementations publish under
gateway-api's conformance/reports/) and its table, docs/conformance.md.

Where the results come from: a run of the local conformance kit (../shared/conformance)
with the features Portico claims (portico.translator.features, the list GatewayClass
status.supportedFeatures is made of), plus Portico's own tests for each feature, named
in docs/conformance-evidence.yaml (real-Envoy integration tests and golden statuses,
chiefly for features the kit has no case for), run with pytest.

Profiles are upstream's (conformance/utils/suite/profiles.go): a test belongs to every
profile holding all its features, as core when they are all core features of it, else as
extended. One deviation: GATEWAY-GRPC's extended features include GRPCRoute's extended
features (upstream lists only the Gateway's), so GRPCRouteNamedRouteRule and
GRPCRouteRequestHeaderModifier are reported somewhere. UDPRoute belongs to no upstream
profile; like every claimed feature it is in `features`, Portico's addition to the
format: each claimed feature with its result and the tests that show it.

    python tools/conformance_report.py                      # run the kit and the tests, write both files
    python tools/conformance_report.py --kit-report K.json  # reuse a kit run (run --report K.json)
    python tools/conformance_report.py --check              # the table is current and the claims are covered
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from sharedpaths import shared_dir  # noqa: E402

from portico.translator.features import SUPPORTED_FEATURES  # noqa: E402

EVIDENCE = ROOT / "docs" / "conformance-evidence.yaml"
REPORT = ROOT / "docs" / "conformance-report.yaml"
TABLE = ROOT / "docs" / "conformance.md"
GOLDEN = ROOT / "tests" / "translator" / "testdata"
SHARED = shared_dir()
FEATURES_GO = SHARED / "reference" / "gateway-api" / "pkg" / "features"
KIT = Path(os.environ.get("PORTICO_CONFORMANCE_KIT", SHARED / "conformance"))

# pkg/features: the feature sets profiles are made of (variable name -> its Feature vars)
SET = re.compile(r"^var (\w+Features) = sets\.New\((.*?)\)", re.S | re.M)
FEATURE_VAR = re.compile(r"(\w+)\s*=\s*Feature\{\s*Name:\s*(\w+)", re.S)
NAME_CONST = re.compile(r"(Support\w+)\s*(?:FeatureName)?\s*=\s*\"(\w+)\"")

# the kit's skip reasons of upstream's feature gating (skipIfFeatures, unclaimed features)
FEATURE_GATED = ("not run when the implementation claims", "needs unclaimed feature")
PROFILES: dict[str, tuple[set[str], tuple[str, ...]]] = {
    # name: (core feature names, extended feature sets)
    "GATEWAY-HTTP": ({"Gateway", "ReferenceGrant", "HTTPRoute"},
                     ("GatewayExtendedFeatures", "HTTPRouteExtendedFeatures", "BackendTLSPolicyCoreFeatures",
                      "BackendTLSPolicyExtendedFeatures")),
    "GATEWAY-TLS": ({"Gateway", "ReferenceGrant", "TLSRoute"}, ("GatewayExtendedFeatures", "TLSRouteExtendedFeatures")),
    "GATEWAY-TCP": ({"Gateway", "TCPRoute"}, ("GatewayExtendedFeatures", "TCPRouteExtendedFeatures")),
    "GATEWAY-GRPC": ({"Gateway", "ReferenceGrant", "GRPCRoute"},
                     ("GatewayExtendedFeatures", "GRPCRouteExtendedFeatures")),
}


def feature_sets() -> dict[str, set[str]]:
    """pkg/features' sets by variable name, as feature names."""
    text = "\n".join(p.read_text() for p in sorted(FEATURES_GO.glob("*.go")))
    names = dict(NAME_CONST.findall(text))
    variables = {var: names.get(const.split(".")[-1], "") for var, const in FEATURE_VAR.findall(text)}
    return {name: {variables[v] for v in re.findall(r"\w+", body) if v in variables}
            for name, body in SET.findall(text)}


def profiles() -> dict[str, tuple[set[str], set[str]]]:
    sets = feature_sets()
    return {name: (core, set().union(*(sets.get(s, set()) for s in extended)) - core)
            for name, (core, extended) in PROFILES.items()}


# ---------------------------------------------------------------- results


def kit_cases() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted((KIT / "cases").glob("*.yaml")):
        case = yaml.safe_load(path.read_text()) or {}
        out[case["name"]] = case
    return out


def run_kit(features: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "kit.json"
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        subprocess.run([sys.executable, str(KIT / "run"), "--supported-features", *features, "--report", str(report)],
                       env=env, check=False)
        return dict(json.loads(report.read_text()))


def load_evidence() -> dict[str, list[str]]:
    data = yaml.safe_load(EVIDENCE.read_text()) or {}
    return {name: list(tests or []) for name, tests in (data.get("features") or {}).items()}


def run_tests(node_ids: list[str]) -> dict[str, str]:
    """pytest node id -> PASS | FAIL | SKIP (JUnit XML of one pytest run)."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
                        *node_ids], cwd=ROOT, check=False)
        return junit_results(xml)


def junit_results(xml: Path) -> dict[str, str]:
    out = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        node = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
        failed = case.find("failure") is not None or case.find("error") is not None
        out[node] = "FAIL" if failed else "SKIP" if case.find("skipped") is not None else "PASS"
    return out


# ---------------------------------------------------------------- the report


def outcome(counts: dict[str, int]) -> str:
    if counts["Failed"]:
        return "failure"
    return "partial" if counts["Skipped"] else "success"


def status(tests: list[tuple[str, str]]) -> dict[str, Any]:
    counts = {"Passed": 0, "Failed": 0, "Skipped": 0}
    for _, result in tests:
        counts[{"PASS": "Passed", "FAIL": "Failed", "SKIP": "Skipped"}[result]] += 1
    out: dict[str, Any] = {"result": outcome(counts), "statistics": counts}
    skipped = sorted(name for name, result in tests if result == "SKIP")
    failed = sorted(name for name, result in tests if result == "FAIL")
    if skipped:
        out["skippedTests"] = skipped
    if failed:
        out["failedTests"] = failed
    return out


def build(kit: dict[str, Any], tests: dict[str, str], evidence: dict[str, list[str]],
          date: str, url: str = "", contact: tuple[str, ...] = ()) -> dict[str, Any]:
    cases = kit_cases()
    claimed = sorted(SUPPORTED_FEATURES)
    # every test with its features and result: kit cases, then Portico's own tests
    results: dict[str, tuple[set[str], str]] = {}
    for r in kit["cases"]:
        if r["result"] == "SKIP" and str(r.get("reason", "")).startswith(FEATURE_GATED):
            continue  # not applicable to what Portico claims: upstream neither runs nor counts it
        results[r["name"]] = (set(cases.get(r["name"], {}).get("features") or r.get("features") or []), r["result"])
    for feature, nodes in evidence.items():
        for node in nodes:
            if node.startswith("kit:"):  # a kit case showing a feature it is not tagged with
                name = node[4:]
                if name in results:
                    results[name] = (results[name][0] | {feature}, results[name][1])
                continue
            features = results[node][0] if node in results else set()
            results[node] = (features | {feature}, tests.get(node, "FAIL"))
    profile_reports = []
    for name, (core, extended) in profiles().items():
        mine = {t: r for t, r in results.items() if r[0] and r[0] <= core | extended}
        core_tests = [(t, r[1]) for t, r in mine.items() if r[0] <= core]
        ext_tests = [(t, r[1]) for t, r in mine.items() if not r[0] <= core]
        core_status, ext_status = status(core_tests), status(ext_tests)
        ext_status["supportedFeatures"] = sorted(extended & set(claimed))
        unsupported = sorted(extended - set(claimed))
        if unsupported:
            ext_status["unsupportedFeatures"] = unsupported
        summary = (f"Core tests {word(core_status['result'])}. "
                   f"Extended tests {word(ext_status['result'])}.")
        profile_reports.append({"name": name, "summary": summary, "core": core_status, "extended": ext_status})
    feature_reports = []
    for feature in claimed:
        shown = sorted((t, r[1]) for t, r in results.items() if feature in r[0])
        verdict = ("untested" if not shown else "failure" if any(r == "FAIL" for _, r in shown)
                   else "success" if all(r == "PASS" for _, r in shown) else "partial")
        feature_reports.append({"name": feature, "result": verdict,
                                "tests": [t if "::" in t else f"kit:{t}" for t, _ in shown]})
    provisional = sorted(r["name"] for r in kit["cases"] if r.get("provisional") and r["result"] == "PASS")
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "ConformanceReport",
        "date": date,
        "gatewayAPIVersion": gateway_api_version(),
        "gatewayAPIChannel": "experimental",
        "mode": "standalone",
        # url and contact: the publisher's (--url, --contact); the repository names none
        "implementation": {"organization": "portico", "project": "portico", "url": url,
                           "version": package_version(), "contact": list(contact)},
        "profiles": profile_reports,
        "succeededProvisionalTests": provisional,
        "supportedFeatures": claimed,
        "features": feature_reports,
    }


def word(result: str) -> str:
    return {"success": "succeeded", "partial": "partially succeeded", "failure": "failed"}[result]


def gateway_api_version() -> str:
    commit = SHARED / "reference" / "gateway-api" / "UPSTREAM_COMMIT"
    return f"main@{commit.read_text().strip()[:12]}" if commit.exists() else "unknown"


def package_version() -> str:
    match = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    return match.group(1) if match else "unknown"


# ---------------------------------------------------------------- the table


def render(report: dict[str, Any]) -> str:
    lines = [
        "# Conformance",
        "",
        "Portico's conformance report: generated by `tools/conformance_report.py` from a run of the",
        "local conformance kit (`../shared/conformance`) with the features Portico claims and of",
        "Portico's own tests for each feature (`docs/conformance-evidence.yaml`); the report itself,",
        "in upstream's `ConformanceReport` format, is `docs/conformance-report.yaml`. Do not edit by hand.",
        "",
        f"Gateway API {report['gatewayAPIVersion']} ({report['gatewayAPIChannel']}), "
        f"mode {report['mode']}, Portico {report['implementation']['version']}, {report['date']}.",
        "",
        "## Profiles",
        "",
        "| profile | core | extended | summary |",
        "|---|---|---|---|",
    ]
    for p in report["profiles"]:
        lines.append(f"| {p['name']} | {cell(p['core'])} | {cell(p['extended'])} | {p['summary']} |")
    lines += ["", f"## Features ({len(report['features'])} claimed)", "",
              "GatewayClass `status.supportedFeatures` lists exactly these (`portico.translator.features`).", "",
              "| feature | result | tests |", "|---|---|---|"]
    for f in report["features"]:
        tests = "<br>".join(f"`{t}`" for t in f["tests"])
        lines.append(f"| `{f['name']}` | {f['result']} | {tests} |")
    lines.append("")
    return "\n".join(lines)


def cell(s: dict[str, Any]) -> str:
    c = s["statistics"]
    return f"{s['result']}: {c['Passed']} passed, {c['Failed']} failed, {c['Skipped']} skipped"


# ---------------------------------------------------------------- checks


def problems(report: dict[str, Any], evidence: dict[str, list[str]]) -> list[str]:
    """The report claims what GatewayClass status claims, every claimed feature is shown by a
    passing test, and the evidence names tests that exist."""
    out = []
    if report.get("supportedFeatures") != sorted(SUPPORTED_FEATURES):
        out.append("the report's supportedFeatures are not portico.translator.features (rerun the report)")
    for f in report.get("features", []):
        if f["result"] != "success":
            out.append(f"feature {f['name']}: {f['result']}")
    out += [f"evidence for {name}: not a claimed feature" for name in evidence if name not in SUPPORTED_FEATURES]
    for name, nodes in evidence.items():
        out += [f"evidence for {name}: {node}: {why}" for node in nodes for why in [node_problem(node)] if why]
    return out


def node_problem(node: str) -> str:
    if node.startswith("kit:"):
        return "" if not (KIT / "cases").is_dir() or node[4:] in kit_cases() else "no such kit case"
    path, _, name = node.partition("::")
    file = ROOT / path
    if not file.exists():
        return "no such file"
    base, _, param = name.partition("[")
    if not re.search(rf"^def {re.escape(base)}\(", file.read_text(), re.M):
        return "no such test function"
    if path.endswith("test_golden.py") and param and not (GOLDEN / param.rstrip("]") / "in.yaml").exists():
        return "no such golden case"
    return ""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kit-report", type=Path, help="a kit run's JSON report (run --report FILE) to reuse")
    parser.add_argument("--tests-report", type=Path, help="a JUnit XML of the evidence tests to reuse")
    parser.add_argument("--check", action="store_true", help="check the committed report and table")
    parser.add_argument("--url", default="", help="implementation.url")
    parser.add_argument("--contact", nargs="*", default=[], help="implementation.contact")
    args = parser.parse_args(argv)
    evidence = load_evidence()
    if args.check:
        report = yaml.safe_load(REPORT.read_text())
        found = problems(report, evidence)
        if TABLE.read_text() != render(report):
            found.append(f"{TABLE} is stale: run python tools/conformance_report.py")
        for p in found:
            print(p, file=sys.stderr)
        return 1 if found else 0
    kit = json.loads(args.kit_report.read_text()) if args.kit_report else run_kit(sorted(SUPPORTED_FEATURES))
    nodes = sorted({n for ns in evidence.values() for n in ns if not n.startswith("kit:")})
    tests = junit_results(args.tests_report) if args.tests_report else run_tests(nodes)
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    report = build(kit, tests, evidence, date, args.url, tuple(args.contact))
    REPORT.write_text(yaml.safe_dump(report, sort_keys=False, width=120))
    TABLE.write_text(render(report))
    found = problems(report, evidence)
    for p in found:
        print(p, file=sys.stderr)
    print(f"{REPORT.relative_to(ROOT)}, {TABLE.relative_to(ROOT)}: "
          + "; ".join(f"{p['name']} {p['summary']}" for p in report["profiles"]))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
