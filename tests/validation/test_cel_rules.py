"""Every CEL rule of every shipped CRD compiles and evaluates with our CEL environment."""

from __future__ import annotations

from typing import Any

import pytest

from portico.validation.celext import new_context
from portico.validation.crds import default_registry
from portico.validation.schema import MISSING, SchemaNode, compile_schema, to_cel


def _rule_nodes(node: SchemaNode, path: str = "") -> list[tuple[str, SchemaNode]]:
    found = [(path, node)] if node.rules else []
    for name, child in node.properties.items():
        found += _rule_nodes(child, f"{path}.{name}")
    if node.items is not None:
        found += _rule_nodes(node.items, f"{path}[*]")
    if node.additional is not None:
        found += _rule_nodes(node.additional, f"{path}{{*}}")
    return found


def sample(node: SchemaNode, depth: int = 0) -> Any:
    """A value with every property present (so rules can run without missing keys)."""
    if node.default is not MISSING and node.type not in ("object", "array"):
        return node.default
    if node.enum:
        return node.enum[0]
    if node.type == "object":
        if depth > 12:
            return {}
        out = {k: sample(v, depth + 1) for k, v in node.properties.items()}
        if node.additional is not None:
            out["key"] = sample(node.additional, depth + 1)
        return out
    if node.type == "array":
        return [sample(node.items, depth + 1)] if node.items is not None else []
    if node.type == "integer":
        return int(node.minimum) if node.minimum is not None else 1
    if node.type == "number":
        return 1.0
    if node.type == "boolean":
        return True
    if node.pattern_src and "ms" in node.pattern_src and "h|m|s" in node.pattern_src:
        return "1s"  # a duration
    if node.format == "ipv4" or node.format == "ipv6":
        return "10.0.0.1"
    return "a"


def test_every_rule_compiles() -> None:
    total = 0
    errors: list[str] = []
    for crd in default_registry().all():
        node = compile_schema(crd.schema, errors)
        total += sum(len(n.rules) for _, n in _rule_nodes(node))
    assert errors == []
    assert total >= 350  # 362 rules over all served versions at the time of writing


def test_every_rule_evaluates() -> None:
    failures: list[str] = []
    evaluated = 0
    for crd in default_registry().all():
        root = default_registry().schema(crd)
        for path, node in _rule_nodes(root):
            value = sample(node)
            variables = {"self": to_cel(node, value, node.cel_names), "oldSelf": to_cel(node, value, None)}
            ctx = new_context(variables)
            for rule in node.rules:
                evaluated += 1
                try:
                    result = rule.program.execute(ctx)
                except Exception as exc:  # noqa: BLE001
                    failures.append(f"{crd.kind}/{crd.version} {path}: {rule.rule!r}: {type(exc).__name__} {exc}")
                    continue
                if not isinstance(result, bool):
                    failures.append(f"{crd.kind}/{crd.version} {path}: {rule.rule!r} returned {result!r}")
    assert evaluated >= 350
    assert failures == [], "\n".join(failures)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("isIP('10.0.0.1') && isIP('::1') && !isIP('example.com') && !isIP('10.0.0.01')", True),
        ("ip('10.0.0.1').family() == 4 && cidr('10.0.0.0/8').containsIP(ip('10.1.2.3'))", True),
        ("'a/b/c'.split('/').size() == 3 && 'abc'.substring(1) == 'bc'", True),
        ("'ABC'.lowerAscii() == 'abc' && [1, 2, 3].isSorted() && ![2, 1].isSorted()", True),
        ("[1, 2, 3].indexOf(2) == 1 && 'abcb'.lastIndexOf('b') == 3", True),
        ("format.dns1123Label().validate('ok') == null && format.dns1123Label().validate('NO') != null", True),
        ("isURL('https://example.com/x') && url('https://example.com:8443/x').getPort() == '8443'", True),
        ("[1, 2].map(x, x * 2) == [2, 4] && [1, 2, 3].filter(x, x > 1).size() == 2", True),
        ("duration('1h30m') > duration('90s') && 'abc'.matches('^a') && 'x'.startsWith('x')", True),
    ],
)
def test_kubernetes_library_functions(expr: str, expected: bool) -> None:
    import cel

    assert cel.compile(expr).execute(new_context({})) is expected


# functions the cel runtime provides natively (operators are named with '_' or '@')
NATIVE = {
    "size", "contains", "startsWith", "endsWith", "matches", "duration", "timestamp", "int", "uint",
    "double", "string", "bytes", "bool", "type", "dyn", "has",
}  # fmt: skip


def test_every_function_a_rule_calls_exists() -> None:
    from portico.validation.celext import K8S_FUNCTIONS

    missing: set[str] = set()
    reg = default_registry()

    def walk(node: SchemaNode) -> None:
        for rule in node.rules:
            for fn in rule.program.functions():
                if fn[0] not in "_@!" and fn not in NATIVE and fn not in K8S_FUNCTIONS:
                    missing.add(fn)
        for child in node.children():
            walk(child)

    for crd in reg.all():
        walk(reg.schema(crd))
    assert missing == set()


@pytest.mark.parametrize(
    ("pattern", "text", "matched"),
    [
        (r"^(?i)\.?[a-z_][a-z_0-9]*$", "Foo_1", True),  # RE2 flag group after ^
        (r"^[a-z]+$", "abc\n", False),  # $ is end of text, as in RE2
        (r"^/[a-z]*$", "/abc", True),
    ],
)
def test_go_regex(pattern: str, text: str, matched: bool) -> None:
    from portico.validation.celext import go_regex

    assert bool(go_regex(pattern).search(text)) is matched


def test_rewrite_matches_leaves_fields_and_strings_alone() -> None:
    from portico.validation.celext import MATCHES_FUNCTION, rewrite_matches

    rule = 'has(self[0].matches) && self.v.matches(\'matches(x)\') && matches(self.v, r"""a""")'
    assert rewrite_matches(rule) == (
        f'has(self[0].matches) && self.v.{MATCHES_FUNCTION}(\'matches(x)\') && {MATCHES_FUNCTION}(self.v, r"""a""")'
    )
