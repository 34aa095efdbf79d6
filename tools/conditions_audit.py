"""Generate docs/conditions.md: every condition type and reason the Gateway API defines
(the `...ConditionType` and `...ConditionReason` constants of apis/v1), where Portico sets
it and which tests show it, or why it does not.

Why generated: which conditions a controller MUST set lives in the Go doc comments, and
a hand-written table drifts. The constants and the types each reason goes with come from
the Go sources (`shared/reference/gateway-api/apis/v1`); "where" from Portico's own code
(every `Cond("Type", status, "Reason", ...)` call with literal type and reason, found by
parsing src/portico); the evidence from the test inputs themselves: a translator golden
status (tests/translator/testdata/*/status.yaml) or a conformance-kit case Portico passes
(tests/conformance/passing.txt) that shows the type with the reason on the right object.
docs/conditions.yaml adds what cannot be found mechanically (code building a reason from
a variable, tests that are not goldens) and says why a constant is not set.
tests/test_conditions_audit.py fails when a constant has neither evidence nor an audit
entry, an entry names code or a test that does not exist, or the document is stale.

    python tools/conditions_audit.py          # rewrite docs/conditions.md
    python tools/conditions_audit.py --check  # exit 1 when it is stale
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from sharedpaths import shared_dir

ROOT = Path(__file__).resolve().parent.parent
SHARED = shared_dir()
GO_TYPES = SHARED / "reference" / "gateway-api" / "apis" / "v1"
KIT = Path(os.environ.get("PORTICO_CONFORMANCE_KIT", SHARED / "conformance"))
AUDIT = ROOT / "docs" / "conditions.yaml"
OUTPUT = ROOT / "docs" / "conditions.md"
GOLDEN = ROOT / "tests" / "translator" / "testdata"
PASSING = ROOT / "tests" / "conformance" / "passing.txt"
SOURCES = ROOT / "src" / "portico"

# Go type name prefix -> the status object the condition lives on
OWNERS = {
    "GatewayClass": "GatewayClass",
    "Gateway": "Gateway",
    "Listener": "Gateway listener",
    "ListenerEntry": "ListenerSet listener",
    "ListenerSet": "ListenerSet",
    "Route": "Route parent",
    "Policy": "Policy ancestor",
}
OWNER_ORDER = list(OWNERS.values())
ROUTE_KINDS = frozenset({"HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"})
CONST = re.compile(r"^\s*(\w+)\s+(\w+)Condition(Type|Reason)\s*=\s*\"(\w+)\"")
LISTED_REASON = re.compile(r'^\*\s+"(\w+)"')
USED_WITH = re.compile(r'used with the "(\w+)" condition')


@dataclasses.dataclass(frozen=True)
class Constant:
    go_name: str
    owner: str
    kind: str  # "Type" or "Reason"
    value: str
    comment: str
    types: tuple[str, ...] = ()  # Reason: the condition types it goes with ("" unknown)

    @property
    def deprecated(self) -> bool:
        return "Deprecated" in self.comment


@dataclasses.dataclass(frozen=True)
class AuditEntry:
    set: bool = True
    why: str = ""
    code: tuple[str, ...] = ()
    tests: tuple[str, ...] = ()


# ---------------------------------------------------------------- the Go constants


def go_constants() -> list[Constant]:
    """Every condition type and reason constant, with its doc comment."""
    found: list[Constant] = []
    for path in sorted(GO_TYPES.glob("*.go")):
        comment: list[str] = []
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith("//"):
                comment.append(stripped[2:].strip())
                continue
            m = CONST.match(line)
            if m and m.group(2) in OWNERS:
                found.append(Constant(m.group(1), OWNERS[m.group(2)], m.group(3), m.group(4), "\n".join(comment)))
            comment = []
    return with_reason_types(found)


def with_reason_types(consts: list[Constant]) -> list[Constant]:
    """A reason goes with the types whose comment lists it ("Possible reasons ... are:
    * "Reason""), else the one its own comment names ("used with the "X" condition")."""
    listed: dict[tuple[str, str], set[str]] = {}
    for c in consts:
        if c.kind == "Type":
            for line in c.comment.splitlines():
                m = LISTED_REASON.match(line)
                if m:
                    listed.setdefault((c.owner, m.group(1)), set()).add(c.value)
    out = []
    for c in consts:
        if c.kind == "Reason":
            types = set(listed.get((c.owner, c.value), set()))
            types |= set(USED_WITH.findall(c.comment))
            c = dataclasses.replace(c, types=tuple(sorted(types)))
        out.append(c)
    return out


# ---------------------------------------------------------------- evidence


Seen = dict[tuple[str, str, str], set[str]]  # (owner, type, reason) -> evidence names


def conditions_in(kind: str, status: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(owner, condition) of one object's status, as the golden files and kit cases write it."""
    top = {"GatewayClass": "GatewayClass", "Gateway": "Gateway", "ListenerSet": "ListenerSet"}.get(kind)
    for c in status.get("conditions") or []:
        if top:
            yield top, c
    listener_owner = {"Gateway": "Gateway listener", "ListenerSet": "ListenerSet listener"}.get(kind)
    for ls in status.get("listeners") or []:
        for c in ls.get("conditions") or []:
            if listener_owner:
                yield listener_owner, c
    for p in status.get("parents") or []:
        for c in p.get("conditions") or []:
            if kind in ROUTE_KINDS:
                yield "Route parent", c
    for a in status.get("ancestors") or []:
        for c in a.get("conditions") or []:
            if kind.endswith("Policy"):
                yield "Policy ancestor", c


def record(seen: Seen, kind: str, status: dict[str, Any], name: str) -> None:
    for owner, c in conditions_in(kind, status):
        if c.get("type"):
            seen.setdefault((owner, c["type"], c.get("reason") or ""), set()).add(name)


@functools.cache
def golden_seen() -> Seen:
    seen: Seen = {}
    for path in sorted(GOLDEN.glob("*/status.yaml")):
        for key, status in (yaml.safe_load(path.read_text()) or {}).items():
            record(seen, key.split(" ")[0], status or {}, f"golden:{path.parent.name}")
    return seen


def passing_cases() -> set[str]:
    return {line.strip() for line in PASSING.read_text().splitlines() if line.strip() and not line.startswith("#")}


@functools.cache
def kit_seen() -> Seen:
    """Conditions a passing kit case expects with a reason (steps `status`)."""
    seen: Seen = {}
    cases = KIT / "cases"
    if not cases.is_dir():
        return seen
    passing = passing_cases()
    for path in sorted(cases.glob("*.yaml")):
        case = yaml.safe_load(path.read_text()) or {}
        if case.get("name") not in passing:
            continue
        for step in case.get("steps") or []:
            status = step.get("status") if isinstance(step, dict) else None
            if isinstance(status, dict) and isinstance(status.get("ref"), dict):
                record(seen, status["ref"].get("kind", ""), status, f"kit:{case['name']}")
    return seen


def evidence(c: Constant) -> list[str]:
    """Goldens and kit cases showing the constant on its object."""
    found: set[str] = set()
    for seen in (golden_seen(), kit_seen()):
        for (owner, ctype, reason), names in seen.items():
            if owner != c.owner:
                continue
            if c.kind == "Type" and ctype == c.value:
                found |= names
            if c.kind == "Reason" and reason == c.value and (not c.types or ctype in c.types):
                found |= names
    return sorted(found, key=lambda n: (not n.startswith("kit:"), n))


# ---------------------------------------------------------------- where Portico sets them


# Where each object's conditions are made: a type such as Accepted is set for every
# object, so "where" keeps, per object, the modules (or module:function) that make its
# conditions (under portico.translator).
OWNER_CODE = {
    "GatewayClass": ("gateway:class_conditions", "gateway:supported_version"),
    "Gateway": ("gateway:gateway_conditions", "gateway:address_conditions", "gateway:infrastructure_conditions",
                "gateway:not_programmed", "gateway:resolved_refs_conditions", "frontendtls:backend_client_certificate",
                "frontendtls:insecure_fallback_conditions", "status:gateway_status"),
    "Gateway listener": ("gateway:validate_listener", "gateway:port_unavailable", "gateway:validate_tls",
                         "gateway:resolve_certificates", "gateway:listener_conditions", "gateway:mark_conflicts",
                         "gateway:conflict", "gateway:not_programmed", "frontendtls:frontend_validation",
                         "tlsoverlap:"),
    "ListenerSet": ("listenerset:reject", "listenerset:listener_set_conditions", "listenerset:refusal_reason",
                    "status:listenerset_status"),
    "ListenerSet listener": ("listenerset:reject", "listenerset:mark_conflict_with", "listenerset:conflict_reason",
                             "gateway:validate_listener", "gateway:port_unavailable", "gateway:validate_tls",
                             "gateway:resolve_certificates", "gateway:listener_conditions", "gateway:conflict",
                             "tlsoverlap:"),
    "Route parent": ("attachment:", "routebinding:", "filters:", "backends:", "rules:", "httproute:", "grpcroute:",
                     "l4routes:", "regex:", "status:route_status"),
    "Policy ancestor": ("policies:", "policies.", "backendtls:", "upstreamtls:", "listenerpolicy:", "traffic:",
                        "status:policy_status"),
}
# Evidence listed per row: the first few of each source, then how many more.
SHOWN = 4


def owns(owner: str, where: str) -> bool:
    short = where.removeprefix("portico.translator.")
    return any(short.startswith(p) if p.endswith((":", ".")) else short == p for p in OWNER_CODE[owner])


def literal(node: ast.expr, names: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return names.get(node.id)
    return None


def definitions(tree: ast.Module) -> Iterator[tuple[str, ast.AST]]:
    """(qualified name, node) of top-level functions and class methods; nested functions
    count as their enclosing definition."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield f"{node.name}.{item.name}", item


@functools.cache
def cond_calls() -> dict[tuple[str, str], tuple[str, ...]]:
    """(type, reason) -> "module:function" of every Cond(type, status, reason) call whose type
    and reason are literals (or module-level string constants)."""
    found: dict[tuple[str, str], set[str]] = {}
    for path in sorted(SOURCES.rglob("*.py")):
        module = ".".join(path.relative_to(SOURCES.parent).with_suffix("").parts)
        tree = ast.parse(path.read_text())
        names = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                 and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
                 for t in n.targets if isinstance(t, ast.Name)}
        for qualname, fn in definitions(tree):
            for node in ast.walk(fn):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Cond"
                        and len(node.args) >= 3):
                    continue
                ctype, reason = literal(node.args[0], names), literal(node.args[2], names)
                if ctype is not None and reason is not None:
                    found.setdefault((ctype, reason), set()).add(f"{module}:{qualname}")
    return {k: tuple(sorted(v)) for k, v in found.items()}


def code_of(c: Constant) -> list[str]:
    out: set[str] = set()
    for (ctype, reason), where in cond_calls().items():
        if c.kind == "Type" and ctype != c.value:
            continue
        if c.kind == "Reason" and (reason != c.value or (c.types and ctype not in c.types)):
            continue
        out.update(w for w in where if owns(c.owner, w))
    return sorted(out)


# ---------------------------------------------------------------- the audit


def load_audit() -> dict[str, AuditEntry]:
    data = yaml.safe_load(AUDIT.read_text()) or {}
    return {name: AuditEntry(set=bool(e.get("set", True)), why=str(e.get("why", "")).strip(),
                             code=tuple(e.get("code") or ()), tests=tuple(e.get("tests") or ()))
            for name, e in (data.get("constants") or {}).items()}


@dataclasses.dataclass(frozen=True)
class Row:
    constant: Constant
    set: bool
    why: str
    code: tuple[str, ...]
    tests: tuple[str, ...]


def rows(audit: dict[str, AuditEntry]) -> list[Row]:
    out = []
    for c in go_constants():
        entry = audit.get(c.go_name, AuditEntry())
        code = tuple(dict.fromkeys([*code_of(c), *entry.code])) if entry.set else entry.code
        tests = tuple(dict.fromkeys([*evidence(c), *entry.tests])) if entry.set else entry.tests
        out.append(Row(c, entry.set, entry.why, code, tests))
    return sorted(out, key=lambda r: (OWNER_ORDER.index(r.constant.owner), r.constant.kind != "Type",
                                      r.constant.types, r.constant.value, r.constant.go_name))


def problems(audit: dict[str, AuditEntry]) -> list[str]:
    """What makes the audit untrue: a constant set without evidence or code, an unset one
    without a reason, entries naming unknown constants, code or tests."""
    out = []
    names = {c.go_name for c in go_constants()}
    out += [f"{name}: no such constant in apis/v1" for name in sorted(set(audit) - names)]
    for r in rows(audit):
        name = r.constant.go_name
        if r.set and not r.tests:
            out.append(f"{name} ({r.constant.owner} {r.constant.kind} {r.constant.value}): no test shows it "
                       "(add a golden or an audit entry: tests, or set: false with why)")
        if r.set and not r.code:
            out.append(f"{name}: set, but no code sets it (add code: to its audit entry)")
        if not r.set and not r.why:
            out.append(f"{name}: not set, and no why")
        if not r.set and code_of(r.constant):
            out.append(f"{name}: marked not set, but {', '.join(code_of(r.constant))} sets it")
        out += [f"{name}: code {ref} does not exist" for ref in r.code if not code_exists(ref)]
        out += [f"{name}: test {ref}: {why}" for ref in r.tests for why in [test_problem(ref)] if why]
    return out


def code_exists(ref: str) -> bool:
    module, _, attr = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError:
        return False
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part, None)
        if obj is None:
            return False
    return True


def test_problem(ref: str) -> str:
    if ref.startswith("golden:"):
        return "" if (GOLDEN / ref[7:] / "in.yaml").exists() else "no such golden case"
    if ref.startswith("kit:"):
        return "" if ref[4:] in passing_cases() else "not a passing kit case"
    path, _, name = ref.partition("::")
    file = ROOT / path
    if not file.exists():
        return "no such file"
    defined = {n.name for n in ast.walk(ast.parse(file.read_text())) if isinstance(n, ast.FunctionDef)}
    return "" if name.split("[")[0] in defined else "no such test function"


# ---------------------------------------------------------------- the document


def render(audit: dict[str, AuditEntry]) -> str:
    all_rows = rows(audit)
    unset = [r for r in all_rows if not r.set]
    lines = [
        "# Conditions",
        "",
        "Every condition type and reason of the Gateway API (`...ConditionType` and `...ConditionReason`",
        "constants of `apis/v1`), where Portico sets it and the tests that show it, or why it does not.",
        "Generated by `tools/conditions_audit.py` from the Go sources, Portico's `Cond(...)` calls,",
        "the translator golden statuses (`golden:`), the conformance-kit cases Portico passes (`kit:`)",
        "and the audit in `docs/conditions.yaml`; do not edit by hand.",
        f"{len(all_rows)} constants: {len(all_rows) - len(unset)} set, {len(unset)} not set.",
        "",
    ]
    for owner in OWNER_ORDER:
        owned = [r for r in all_rows if r.constant.owner == owner]
        if not owned:
            continue
        lines += [f"## {owner}", "", "| type | reason | constant | set | where | tests |", "|---|---|---|---|---|---|"]
        for r in owned:
            c = r.constant
            ctype = c.value if c.kind == "Type" else "<br>".join(f"`{t}`" for t in c.types) or "(any)"
            ctype = f"`{ctype}`" if c.kind == "Type" else ctype
            reason = f"`{c.value}`" if c.kind == "Reason" else ""
            setting = "yes" if r.set else f"no: {r.why}"
            if c.deprecated:
                setting += " (deprecated)"
            where = "<br>".join(f"`{x}`" for x in r.code)
            tests = "<br>".join(shortened(r.tests))
            lines.append(f"| {ctype} | {reason} | `{c.go_name}` | {setting} | {where} | {tests} |")
        lines.append("")
    return "\n".join(lines)


def shortened(tests: tuple[str, ...]) -> list[str]:
    """The first SHOWN kit cases, goldens and other tests, then how many more of each."""
    out: list[str] = []
    for prefix in ("kit:", "golden:", ""):
        group = [t for t in tests if t.startswith(prefix) and (prefix or not t.startswith(("kit:", "golden:")))]
        out += [f"`{t}`" for t in group[:SHOWN]]
        if len(group) > SHOWN:
            out.append(f"and {len(group) - SHOWN} more {prefix.rstrip(':') or 'tests'}")
    return out


def main(argv: list[str]) -> int:
    audit = load_audit()
    found = problems(audit)
    for p in found:
        print(p, file=sys.stderr)
    text = render(audit)
    if "--check" in argv:
        stale = OUTPUT.read_text() != text if OUTPUT.exists() else True
        if stale:
            print(f"{OUTPUT} is stale: run python tools/conditions_audit.py", file=sys.stderr)
        return 1 if stale or found else 0
    OUTPUT.write_text(text)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
