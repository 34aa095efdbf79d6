"""Generate docs/spec-coverage.md: every field of the Gateway API CRDs Portico serves,
how Portico implements it (or the status it reports when it does not), and the tests
that show it.

Why generated: a hand-written table drifts. The field list comes from the CRDs'
own schemas (src/portico/crds, the experimental channel, the same files as
shared/reference), the "how" from the audit in docs/spec-coverage.yaml, and the
evidence partly from the test inputs themselves: a golden case whose input sets a
field is listed against it mechanically. tests/test_spec_coverage.py fails when a
field has no audit entry, an entry names code or a test that does not exist, or
the generated file is stale.

    python tools/spec_coverage.py          # rewrite docs/spec-coverage.md
    python tools/spec_coverage.py --check  # exit 1 when it is stale
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CRDS = ROOT / "src" / "portico" / "crds"
AUDIT = ROOT / "docs" / "spec-coverage.yaml"
OUTPUT = ROOT / "docs" / "spec-coverage.md"
GOLDEN_INPUTS = {
    "golden": ROOT / "tests" / "translator" / "testdata",
    "example": ROOT / "examples",
}


LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_all(path: Path) -> list[Any]:
    return list(yaml.load_all(path.read_text(), Loader=LOADER))


@functools.cache
def storage_schemas() -> tuple[tuple[str, str, str, dict[str, Any]], ...]:
    """(kind, group, version, schema) of every CRD's storage version, by kind."""
    found = []
    for path in sorted(CRDS.glob("*.yaml")):
        for doc in load_all(path):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            for version in doc["spec"]["versions"]:
                if version.get("storage"):
                    found.append((doc["spec"]["names"]["kind"], doc["spec"]["group"],
                                  version["name"], version["schema"]["openAPIV3Schema"]))
    return tuple(sorted(found, key=lambda f: f[:3]))


def field_paths(schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Leaf field paths of a schema: `spec.rules[].matches[].path.type`.

    Objects without declared properties (free-form maps such as labels) are leaves.
    metadata, apiVersion and kind are Kubernetes', not the Gateway API's."""
    props = schema.get("properties")
    if props:
        for name, sub in props.items():
            if not prefix and name in ("apiVersion", "kind", "metadata"):
                continue
            yield from field_paths(sub, f"{prefix}.{name}" if prefix else name)
    elif schema.get("type") == "array" and "items" in schema:
        yield from field_paths(schema["items"], prefix + "[]")
    else:
        yield prefix


def used_paths(doc: Any, prefix: str = "") -> Iterator[str]:
    """Every field path (interior and leaf) set in one manifest."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            yield path
            yield from used_paths(value, path)
    elif isinstance(doc, list):
        for item in doc:
            yield prefix + "[]"
            yield from used_paths(item, prefix + "[]")


@functools.cache
def golden_evidence() -> dict[tuple[str, str], set[str]]:
    """(kind, field path) -> test inputs (golden cases, examples) that set it, and
    golden cases whose expected status holds it (status.yaml: "Kind ns/name": status)."""
    evidence: dict[tuple[str, str], set[str]] = {}

    def add(kind: str, doc: dict[str, Any], name: str) -> None:
        for field in used_paths(doc):
            evidence.setdefault((kind, field), set()).add(name)

    for label, base in GOLDEN_INPUTS.items():
        for path in sorted(base.rglob("*.yaml")):
            name = f"{label}:{path.parent.relative_to(base)}"
            if path.name == "status.yaml":
                for key, status in (load_all(path)[0] or {}).items():
                    add(key.split()[0], {"status": status}, name)
            elif path.name != "ir.yaml":
                for doc in load_all(path):
                    if isinstance(doc, dict) and "kind" in doc:
                        add(doc["kind"], {k: v for k, v in doc.items() if k in ("spec", "status")}, name)
    return evidence


@dataclasses.dataclass(frozen=True)
class Entry:
    kind: str
    fields: tuple[str, ...]
    support: str  # "full", "partial" or "none"
    how: str
    code: tuple[str, ...]
    tests: tuple[str, ...]

    def covers(self, path: str) -> bool:
        return any(pattern_regex(p).fullmatch(path) for p in self.fields)


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A field pattern: literal text, `*` for one name, `**` for any rest
    (`spec.rules[].filters[].**`)."""
    parts = (".*" if part == "**" else "[^.]*" if part == "*" else re.escape(part)
             for part in re.split(r"(\*\*|\*)", pattern))
    return re.compile("".join(parts))


SUPPORT = {"full": "yes", "partial": "partly", "none": "no"}


def load_audit() -> list[Entry]:
    data = yaml.safe_load(AUDIT.read_text())
    entries = []
    for kind, items in data["kinds"].items():
        for item in items:
            entries.append(Entry(kind, tuple(item["fields"]), item.get("support", "full"),
                                 " ".join(item["how"].split()), tuple(item.get("code", ())),
                                 tuple(item.get("tests", ()))))
    return entries


def problems(entries: list[Entry]) -> list[str]:
    """Why the audit is not complete or not true; empty when it is."""
    found = []
    for kind, _group, _version, schema in storage_schemas():
        for path in field_paths(schema):
            owners = [e for e in entries if e.kind == kind and e.covers(path)]
            if not owners:
                found.append(f"{kind} {path}: no audit entry")
            elif len(owners) > 1:
                found.append(f"{kind} {path}: {len(owners)} audit entries ({owners[0].fields}, {owners[1].fields})")
    evidence = golden_evidence()
    for entry in entries:
        if entry.support not in SUPPORT:
            found.append(f"{entry.kind} {entry.fields}: support {entry.support!r}")
        found += [f"{entry.kind} {entry.fields}: {p}" for c in entry.code if (p := code_problem(c))]
        found += [f"{entry.kind} {entry.fields}: {p}" for t in entry.tests if (p := test_problem(t))]
        shown = entry_evidence(entry, evidence)
        if not entry.tests and not shown:
            found.append(f"{entry.kind} {entry.fields}: no test")
        # a golden case named as a test must set (or report) one of the entry's fields
        found += [f"{entry.kind} {entry.fields}: {t} sets none of these fields"
                  for t in entry.tests if t.startswith("golden:") and t not in shown]
    return found


def code_problem(ref: str) -> str | None:
    """`package.module:Name.attr` must import."""
    module, _, qualname = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in filter(None, qualname.split(".")):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        return f"code {ref}: {exc}"
    return None


def test_problem(ref: str) -> str | None:
    """`tests/x.py::test_name` must be a test function in that file; `golden:case`
    a translator golden case."""
    if ref.startswith("golden:"):
        case = GOLDEN_INPUTS["golden"] / ref.removeprefix("golden:")
        return None if (case / "in.yaml").exists() else f"test {ref}: no such golden case"
    file, _, name = ref.partition("::")
    path = ROOT / file
    if not path.exists():
        return f"test {ref}: no such file"
    tree = ast.parse(path.read_text())
    names = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return None if name in names else f"test {ref}: no such test function"


def entry_evidence(entry: Entry, evidence: dict[tuple[str, str], set[str]]) -> list[str]:
    names: set[str] = set()
    for (kind, path), sources in evidence.items():
        if kind == entry.kind and entry.covers(path):
            names |= sources
    return sorted(names)


def render(entries: list[Entry]) -> str:
    evidence = golden_evidence()
    lines = [
        "# Spec coverage",
        "",
        "Every field of every Gateway API CRD in the experimental channel, and of Portico's own",
        "(storage versions),",
        "how Portico implements it, and the tests that show it. Generated by",
        "`tools/spec_coverage.py` from the CRDs and the audit in `docs/spec-coverage.yaml`;",
        "do not edit by hand. *Supported*: yes, partly (the part missing and the status",
        "Portico reports for it are in the text) or no (the status Portico reports).",
        "Tests: `golden:` cases are translator golden files (`tests/translator/testdata/`)",
        "whose input sets the field, found mechanically; `example:` are the examples tested",
        "with real Envoy by `tests/test_examples.py`; the rest are named test functions.",
        "",
    ]
    totals = {s: 0 for s in SUPPORT}
    for kind, group, version, schema in storage_schemas():
        paths = list(field_paths(schema))
        mine = [e for e in entries if e.kind == kind]
        lines += [f"## {kind} ({group}/{version})", "",
                  "| fields | supported | how | code | tests |", "|---|---|---|---|---|"]
        for entry in mine:
            covered = [p for p in paths if entry.covers(p)]
            totals[entry.support] += len(covered)
            more = [e for e in entry_evidence(entry, evidence) if e not in entry.tests]
            tests = list(entry.tests) + more[:3] + ([f"{len(more) - 3} more golden cases"] if len(more) > 3 else [])
            lines.append("| {} | {} | {} | {} | {} |".format(
                "<br>".join(f"`{p}`" for p in covered), SUPPORT[entry.support], entry.how.replace("|", "\\|"),
                "<br>".join(f"`{c}`" for c in entry.code), "<br>".join(t if " " in t else f"`{t}`" for t in tests)))
        lines.append("")
    total = sum(totals.values())
    lines.insert(11, f"{total} fields: {totals['full']} supported, {totals['partial']} partly, "
                     f"{totals['none']} not supported.\n")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT / "src"))
    entries = load_audit()
    if found := problems(entries):
        print("\n".join(found), file=sys.stderr)
        return 1
    text = render(entries)
    if "--check" in argv:
        if OUTPUT.read_text() != text:
            print(f"{OUTPUT} is stale: run python tools/spec_coverage.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
