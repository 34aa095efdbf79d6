"""Structural OpenAPI v3 schemas as the API server applies them to custom resources.

A CRD's ``openAPIV3Schema`` is compiled once into a tree of :class:`SchemaNode`
(regexes compiled, CEL rules compiled, Kubernetes extensions resolved).  The
tree then serves three passes over an object, in the API server's order:

1. :func:`prune_and_default`: a copy without unknown fields (each reported) and
   with ``default`` values filled in;
2. :func:`check_structure`: ``type``, ``required``, ``enum``, ``pattern``,
   lengths, bounds, item/property counts, ``format``, ``oneOf``/``anyOf``/
   ``allOf``/``not`` and ``x-kubernetes-list-type`` uniqueness;
3. :func:`check_rules`: the ``x-kubernetes-validations`` CEL rules, skipped
   when pass 2 found a type or enum error (the API server does the same).
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import ipaddress
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from portico.validation.celext import (
    CompiledRule,
    compile_batch,
    compile_rule,
    escape_property,
    go_regex,
    reusable_context,
)
from portico.validation.violation import Violation, shown

PathT = tuple[str | int, ...]
MISSING: Any = object()


def format_path(path: PathT) -> str:
    out: list[str] = []
    for seg in path:
        if isinstance(seg, int):
            out.append(f"[{seg}]")
        elif out:
            out.append(f".{seg}" if _SIMPLE_KEY.match(seg) else f"[{json.dumps(seg)}]")
        else:
            out.append(seg if _SIMPLE_KEY.match(seg) else f"[{json.dumps(seg)}]")
    return "".join(out)


_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


# --- formats the API server enforces (kube-openapi strfmt) ---------------------


def _is_ipv4(s: str) -> bool:
    try:
        ipaddress.IPv4Address(s)
    except ValueError:
        return False
    return True


def _is_ipv6(s: str) -> bool:
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False
    return ":" in s


def _is_cidr(s: str) -> bool:
    try:
        ipaddress.ip_network(s, strict=False)
    except ValueError:
        return False
    return "/" in s


def _is_datetime(s: str) -> bool:
    if not re.match(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?$", s):
        return False
    try:
        datetime.datetime.fromisoformat(s.replace("z", "Z").replace("t", "T"))
    except ValueError:
        return False
    return True


def _is_date(s: str) -> bool:
    try:
        datetime.date.fromisoformat(s)
    except ValueError:
        return False
    return len(s) == 10


def _is_byte(s: str) -> bool:
    try:
        base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


_UUID = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\Z", re.I)
_HOSTNAME = re.compile(
    r"^(?=.{1,253}\Z)([A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*\.?\Z"
)
_MAC = re.compile(r"^([0-9A-Fa-f]{2}[:-]){5}([0-9A-Fa-f]{2})\Z|^([0-9A-Fa-f]{4}\.){2}[0-9A-Fa-f]{4}\Z")

FORMAT_CHECKS: dict[str, Callable[[str], bool]] = {
    "ipv4": _is_ipv4,
    "ipv6": _is_ipv6,
    "cidr": _is_cidr,
    "date-time": _is_datetime,
    "datetime": _is_datetime,
    "date": _is_date,
    "byte": _is_byte,
    "uuid": lambda s: bool(_UUID.match(s)),
    "hostname": lambda s: bool(_HOSTNAME.match(s)),
    "mac": lambda s: bool(_MAC.match(s)),
}


# --- compiled schema ----------------------------------------------------------------


@dataclass(slots=True, eq=False)
class SchemaNode:
    type: str | None = None
    nullable: bool = False
    properties: dict[str, SchemaNode] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    items: SchemaNode | None = None
    additional: SchemaNode | None = None  # additionalProperties with a schema
    additional_allowed: bool = False  # additionalProperties: true
    preserve_unknown: bool = False
    int_or_string: bool = False
    embedded_resource: bool = False
    enum: tuple[Any, ...] | None = None
    pattern: re.Pattern[str] | None = None
    pattern_src: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    min_items: int | None = None
    max_items: int | None = None
    min_properties: int | None = None
    max_properties: int | None = None
    format: str | None = None
    list_type: str | None = None
    list_map_keys: tuple[str, ...] = ()
    default: Any = MISSING
    one_of: tuple[SchemaNode, ...] = ()
    any_of: tuple[SchemaNode, ...] = ()
    all_of: tuple[SchemaNode, ...] = ()
    not_: SchemaNode | None = None
    rules: tuple[CompiledRule, ...] = ()
    batch: Any = None  # one cel.Program for all rules without oldSelf (when 2 or more)
    batch_rules: tuple[CompiledRule, ...] = ()
    # derived
    rules_below: bool = False  # this node or a descendant carries CEL rules
    defaults_below: bool = False  # a descendant has a default
    escapes: dict[str, str] | None = None  # property -> CEL name, when any differs
    escapes_below: bool = False
    cel_names: frozenset[str] | None = None  # identifiers used by this node's rules

    def children(self) -> Iterator[SchemaNode]:
        yield from self.properties.values()
        if self.items is not None:
            yield self.items
        if self.additional is not None:
            yield self.additional


def compile_schema(raw: Mapping[str, Any], rule_errors: list[str] | None = None) -> SchemaNode:
    """Compile an ``openAPIV3Schema`` (recursively). Rule compile errors go to rule_errors."""
    n = SchemaNode()
    n.type = raw.get("type")
    n.nullable = bool(raw.get("nullable", False))
    n.preserve_unknown = bool(raw.get("x-kubernetes-preserve-unknown-fields", False))
    n.int_or_string = bool(raw.get("x-kubernetes-int-or-string", False))
    n.embedded_resource = bool(raw.get("x-kubernetes-embedded-resource", False))
    n.properties = {k: compile_schema(v, rule_errors) for k, v in (raw.get("properties") or {}).items()}
    n.required = tuple(raw.get("required") or ())
    if "items" in raw and isinstance(raw["items"], Mapping):
        n.items = compile_schema(raw["items"], rule_errors)
    ap = raw.get("additionalProperties")
    if isinstance(ap, Mapping):
        n.additional = compile_schema(ap, rule_errors)
    elif ap is True:
        n.additional_allowed = True
    if "enum" in raw:
        n.enum = tuple(raw["enum"])
    if "pattern" in raw:
        n.pattern_src = str(raw["pattern"])
        n.pattern = go_regex(n.pattern_src)
    n.min_length = raw.get("minLength")
    n.max_length = raw.get("maxLength")
    n.minimum = raw.get("minimum")
    n.maximum = raw.get("maximum")
    n.exclusive_minimum = bool(raw.get("exclusiveMinimum", False))
    n.exclusive_maximum = bool(raw.get("exclusiveMaximum", False))
    n.min_items = raw.get("minItems")
    n.max_items = raw.get("maxItems")
    n.min_properties = raw.get("minProperties")
    n.max_properties = raw.get("maxProperties")
    n.format = raw.get("format")
    n.list_type = raw.get("x-kubernetes-list-type")
    n.list_map_keys = tuple(raw.get("x-kubernetes-list-map-keys") or ())
    if "default" in raw:
        n.default = raw["default"]
    n.one_of = tuple(compile_schema(s, rule_errors) for s in raw.get("oneOf") or ())
    n.any_of = tuple(compile_schema(s, rule_errors) for s in raw.get("anyOf") or ())
    n.all_of = tuple(compile_schema(s, rule_errors) for s in raw.get("allOf") or ())
    if isinstance(raw.get("not"), Mapping):
        n.not_ = compile_schema(raw["not"], rule_errors)
    rules: list[CompiledRule] = []
    for spec in raw.get("x-kubernetes-validations") or ():
        try:
            rules.append(compile_rule(spec))
        except ValueError as exc:
            if rule_errors is None:
                raise
            rule_errors.append(str(exc))
    n.rules = tuple(rules)
    n.batch_rules = tuple(r for r in rules if not r.transition)
    n.batch = compile_batch(n.batch_rules)
    # derived facts
    escapes = {}
    for name in n.properties:
        esc = escape_property(name)
        if esc != name:
            escapes[name] = esc if esc is not None else ""
    n.escapes = escapes or None
    kids = list(n.children())
    n.rules_below = bool(n.rules) or any(k.rules_below for k in kids)
    n.defaults_below = any(k.default is not MISSING or k.defaults_below for k in kids)
    n.escapes_below = n.escapes is not None or any(k.escapes_below for k in kids)
    if n.rules and not any(r.transition for r in n.rules):
        names: set[str] = set()
        for r in n.rules:
            names |= _identifier_set(r.rule)
            if r.message_expression:
                names |= _identifier_set(r.message_expression)
        n.cel_names = frozenset(names) if not _compares_whole_values(n.rules) else None
    return n


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# an equality whose operand is a bare variable (a whole object or list, not a field)
_BARE_EQ = re.compile(
    r"(?:(?<![.\w])[A-Za-z_]\w*\s*[!=]=(?!\s*['\"\d(\[-]|\s*(?:true|false|null)\b))"
    r"|(?:[!=]=\s*[A-Za-z_]\w*(?![\w.(\[]))"
)


def _identifier_set(text: str) -> set[str]:
    return set(_IDENT.findall(text))


def _compares_whole_values(rules: tuple[CompiledRule, ...]) -> bool:
    """Whether a rule might compare whole objects (then its input must not be pruned)."""
    return any(_BARE_EQ.search(r.rule) for r in rules)


# --- pass 1: prune unknown fields and apply defaults ------------------------------------


def prune_and_default(node: SchemaNode, value: Any, path: PathT, unknown: list[Violation]) -> Any:
    """A copy of value with unknown fields removed (reported in unknown) and defaults applied."""
    if isinstance(value, dict):
        if node.preserve_unknown and not node.properties and node.additional is None:
            return copy.deepcopy(value)
        out: dict[str, Any] = {}
        props = node.properties
        for k, v in value.items():
            child = props.get(k)
            if child is None:
                child = node.additional
            if child is None:
                if (
                    node.preserve_unknown
                    or node.additional_allowed
                    or (node.embedded_resource and k in ("apiVersion", "kind", "metadata"))
                ):
                    out[k] = copy.deepcopy(v)
                else:
                    p = format_path((*path, k))
                    unknown.append(Violation(p, f'unknown field "{p}"', "unknownField"))
                continue
            if v is None and not child.nullable and child.default is not MISSING:
                continue  # null of a non-nullable field with a default gets defaulted
            out[k] = prune_and_default(child, v, (*path, k), unknown)
        if node.defaults_below:
            for k, child in props.items():
                if k not in out and child.default is not MISSING:
                    out[k] = prune_and_default(child, copy.deepcopy(child.default), (*path, k), unknown)
        return out
    if isinstance(value, list):
        item = node.items
        if item is None:
            return copy.deepcopy(value)
        return [prune_and_default(item, v, (*path, i), unknown) for i, v in enumerate(value)]
    return value


# --- pass 2: structural checks ---------------------------------------------------------

BLOCKING = frozenset({"type", "enum"})


def _type_ok(node: SchemaNode, value: Any) -> bool:
    t = node.type
    if node.int_or_string:
        return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)
    if t is None:
        return True
    if t == "string":
        return isinstance(value, str)
    if t == "object":
        return isinstance(value, dict)
    if t == "array":
        return isinstance(value, list)
    if t == "integer":
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if t == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if t == "boolean":
        return isinstance(value, bool)
    return True


_TYPE_NAMES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}


def _json_type(value: Any) -> str:
    return "null" if value is None else _TYPE_NAMES.get(type(value), type(value).__name__)


def _q(value: Any) -> str:
    try:
        return shown(json.dumps(value, sort_keys=True))
    except (TypeError, ValueError):
        return shown(repr(value))


def check_structure(node: SchemaNode, value: Any, path: PathT, out: list[Violation]) -> None:
    """Append the structural violations of value (against node) to out."""
    if value is None:
        if not node.nullable and node.type is not None:
            out.append(Violation(format_path(path), f"must be of type {node.type}, got null", "type"))
        return
    if not _type_ok(node, value):
        want = "integer or string" if node.int_or_string else node.type
        out.append(Violation(format_path(path), f"must be of type {want}, got {_json_type(value)}", "type"))
        return
    if node.enum is not None and value not in node.enum:
        supported = ", ".join(_q(e) for e in node.enum)
        out.append(
            Violation(format_path(path), f"Unsupported value: {_q(value)}: supported values: {supported}", "enum")
        )
    if isinstance(value, str):
        _check_string(node, value, path, out)
    elif isinstance(value, bool):
        pass
    elif isinstance(value, int | float):
        _check_number(node, value, path, out)
    elif isinstance(value, list):
        _check_list(node, value, path, out)
    elif isinstance(value, dict):
        _check_object(node, value, path, out)
    if node.one_of or node.any_of or node.all_of or node.not_ is not None:
        _check_junctors(node, value, path, out)


def _check_string(node: SchemaNode, value: str, path: PathT, out: list[Violation]) -> None:
    if node.max_length is not None and len(value) > node.max_length:
        out.append(Violation(format_path(path), f"Too long: may not be longer than {node.max_length}", "maxLength"))
    if node.min_length is not None and len(value) < node.min_length:
        out.append(
            Violation(
                format_path(path),
                f"Invalid value: {_q(value)}: should be at least {node.min_length} chars long",
                "minLength",
            )
        )
    if node.pattern is not None and not node.pattern.search(value):
        out.append(
            Violation(format_path(path), f"Invalid value: {_q(value)}: should match '{node.pattern_src}'", "pattern")
        )
    if node.format is not None:
        check = FORMAT_CHECKS.get(node.format)
        if check is not None and not check(value):
            out.append(
                Violation(format_path(path), f"Invalid value: {_q(value)}: must be of type {node.format}", "format")
            )


def _check_number(node: SchemaNode, value: float, path: PathT, out: list[Violation]) -> None:
    if node.minimum is not None:
        if node.exclusive_minimum and value <= node.minimum:
            out.append(
                Violation(
                    format_path(path),
                    f"Invalid value: {_q(value)}: should be greater than {_num(node.minimum)}",
                    "minimum",
                )
            )
        elif value < node.minimum:
            out.append(
                Violation(
                    format_path(path),
                    f"Invalid value: {_q(value)}: should be greater than or equal to {_num(node.minimum)}",
                    "minimum",
                )
            )
    if node.maximum is not None:
        if node.exclusive_maximum and value >= node.maximum:
            out.append(
                Violation(
                    format_path(path),
                    f"Invalid value: {_q(value)}: should be less than {_num(node.maximum)}",
                    "maximum",
                )
            )
        elif value > node.maximum:
            out.append(
                Violation(
                    format_path(path),
                    f"Invalid value: {_q(value)}: should be less than or equal to {_num(node.maximum)}",
                    "maximum",
                )
            )


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _check_list(node: SchemaNode, value: list[Any], path: PathT, out: list[Violation]) -> None:
    if node.max_items is not None and len(value) > node.max_items:
        out.append(
            Violation(
                format_path(path),
                f"Too many: {len(value)}: must have at most {node.max_items} items",
                "maxItems",
            )
        )
    if node.min_items is not None and len(value) < node.min_items:
        out.append(Violation(format_path(path), f"should have at least {node.min_items} items", "minItems"))
    item = node.items
    if item is not None:
        for i, v in enumerate(value):
            check_structure(item, v, (*path, i), out)
    if node.list_type == "set":
        seen: set[str] = set()
        for i, v in enumerate(value):
            key = _q(v)
            if key in seen:
                out.append(Violation(format_path((*path, i)), f"Duplicate value: {key}", "x-kubernetes-list-type"))
            seen.add(key)
    elif node.list_type == "map" and node.list_map_keys:
        seen_keys: set[str] = set()
        for i, v in enumerate(value):
            if not isinstance(v, dict):
                continue
            ident = {k: _map_key_value(item, k, v) for k in node.list_map_keys}
            key = _q(ident)
            if key in seen_keys:
                out.append(Violation(format_path((*path, i)), f"Duplicate value: {key}", "x-kubernetes-list-map-keys"))
            seen_keys.add(key)


def _map_key_value(item: SchemaNode | None, key: str, v: dict[str, Any]) -> Any:
    if key in v:
        return v[key]
    if item is not None:
        prop = item.properties.get(key)
        if prop is not None and prop.default is not MISSING:
            return prop.default
    return None


def _check_object(node: SchemaNode, value: dict[str, Any], path: PathT, out: list[Violation]) -> None:
    for r in node.required:
        if r not in value:
            out.append(Violation(format_path((*path, r)), "Required value", "required"))
    if node.max_properties is not None and len(value) > node.max_properties:
        out.append(
            Violation(
                format_path(path),
                f"Too many: {len(value)}: must have at most {node.max_properties} items",
                "maxProperties",
            )
        )
    if node.min_properties is not None and len(value) < node.min_properties:
        out.append(
            Violation(format_path(path), f"should have at least {node.min_properties} properties", "minProperties")
        )
    props = node.properties
    additional = node.additional
    for k, v in value.items():
        child = props.get(k)
        if child is None:
            child = additional
        if child is not None:
            check_structure(child, v, (*path, k), out)


def _branch_errors(branch: SchemaNode, value: Any, path: PathT) -> list[Violation]:
    errs: list[Violation] = []
    # junctor branches carry value validations only (no types in structural schemas)
    check_structure(branch, value, path, errs)
    return errs


def _check_junctors(node: SchemaNode, value: Any, path: PathT, out: list[Violation]) -> None:
    where = format_path(path)
    for branch in node.all_of:
        out.extend(_branch_errors(branch, value, path))
    if node.any_of:
        results = [_branch_errors(b, value, path) for b in node.any_of]
        if all(results):
            details = "; ".join(sorted({f"{v.path}: {v.message}" for r in results for v in r}))
            out.append(Violation(where, f"must validate at least one schema (anyOf): {details}", "anyOf"))
    if node.one_of:
        results = [_branch_errors(b, value, path) for b in node.one_of]
        valid = sum(1 for r in results if not r)
        if valid == 0:
            details = "; ".join(sorted({f"{v.path}: {v.message}" for r in results for v in r}))
            out.append(
                Violation(where, f"must validate one and only one schema (oneOf). Found none valid: {details}", "oneOf")
            )
        elif valid > 1:
            out.append(Violation(where, f"must validate one and only one schema (oneOf). Found {valid} valid", "oneOf"))
    if node.not_ is not None and not _branch_errors(node.not_, value, path):
        out.append(Violation(where, "must not validate the schema (not)", "not"))


# --- pass 3: CEL rules ---------------------------------------------------------------------


def to_cel(node: SchemaNode, value: Any, keep: frozenset[str] | None) -> Any:
    """The CEL view of value: properties escaped as the API server does; pruned to keep.

    keep is the set of identifiers the node's rules mention; a property whose name is not
    among them can't be observed by the rules, so it isn't converted (conversion into the
    CEL runtime is the expensive part of evaluation).
    """
    if isinstance(value, dict):
        if node.properties:
            esc = node.escapes
            out: dict[str, Any] = {}
            for k, v in value.items():
                name = esc.get(k, k) if esc is not None else k
                if not name:
                    continue
                if keep is not None and name not in keep:
                    continue
                child = node.properties.get(k) or node.additional
                out[name] = to_cel(child, v, keep) if child is not None and _needs_walk(child, keep) else v
            return out
        if node.additional is not None and _needs_walk(node.additional, keep):
            return {k: to_cel(node.additional, v, keep) for k, v in value.items()}
        return value
    if isinstance(value, list) and node.items is not None and _needs_walk(node.items, keep):
        return [to_cel(node.items, v, keep) for v in value]
    return value


def _needs_walk(node: SchemaNode, keep: frozenset[str] | None) -> bool:
    if keep is not None:
        return node.type in ("object", "array") or node.escapes_below
    return node.escapes_below


def check_rules(
    node: SchemaNode,
    value: Any,
    old: Any,
    path: PathT,
    out: list[Violation],
) -> None:
    """Evaluate the CEL rules of node and of its descendants against value (old: previous value)."""
    if value is None:
        return
    if node.rules:
        _eval_rules(node, value, old, path, out)
    if isinstance(value, dict):
        props = node.properties
        additional = node.additional
        for k, v in value.items():
            child = props.get(k) or additional
            if child is not None and child.rules_below:
                o = old.get(k, MISSING) if isinstance(old, dict) else MISSING
                check_rules(child, v, o, (*path, k), out)
    elif isinstance(value, list):
        item = node.items
        if item is not None and item.rules_below:
            olds = _correlate(node, value, old)
            for i, v in enumerate(value):
                check_rules(item, v, olds[i], (*path, i), out)


def _correlate(node: SchemaNode, value: list[Any], old: Any) -> list[Any]:
    """Old list items that correspond to the new ones (only map lists correlate, by key)."""
    if node.list_type != "map" or not node.list_map_keys or not isinstance(old, list):
        return [MISSING] * len(value)
    keys = node.list_map_keys
    index = {}
    for o in old:
        if isinstance(o, dict):
            index[_q([_map_key_value(node.items, k, o) for k in keys])] = o
    return [
        index.get(_q([_map_key_value(node.items, k, v) for k in keys]), MISSING) if isinstance(v, dict) else MISSING
        for v in value
    ]


Failures = tuple[tuple[CompiledRule, str], ...]

# CEL rules are pure functions of `self`: results are memoized per (schema node, value), so a
# parentRef, filter or backendRef shared by many routes is evaluated once.  Converting values
# into the CEL runtime costs more than serializing them, which makes this a large saving.
_MEMO_SIZE = 65536
_memo: OrderedDict[tuple[int, str], Failures] = OrderedDict()
_memo_lock = threading.Lock()


def _eval_rules(node: SchemaNode, value: Any, old: Any, path: PathT, out: list[Violation]) -> None:
    cel_self = to_cel(node, value, node.cel_names)
    if old is not MISSING:
        failures = _evaluate(node, cel_self, to_cel(node, old, None))
    else:
        try:
            key: tuple[int, str] | None = (id(node), json.dumps(cel_self, sort_keys=True, separators=(",", ":")))
        except (TypeError, ValueError):
            key = None
        cached = None
        if key is not None:
            with _memo_lock:
                cached = _memo.get(key)
                if cached is not None:
                    _memo.move_to_end(key)
        if cached is None:
            cached = _evaluate(node, cel_self, MISSING)
            if key is not None:
                with _memo_lock:
                    _memo[key] = cached
                    if len(_memo) > _MEMO_SIZE:
                        _memo.popitem(last=False)
        failures = cached
    for rule, message in failures:
        where = format_path(path)
        if rule.field_path:
            where = where + rule.field_path if where else rule.field_path.lstrip(".")
        out.append(Violation(where, message, rule.rule))


def _evaluate(node: SchemaNode, cel_self: Any, cel_old: Any) -> Failures:
    """The rules of node that fail for this value, each with its message."""
    ctx = reusable_context()
    ctx.add_variable("self", cel_self)
    if cel_old is not MISSING:
        ctx.add_variable("oldSelf", cel_old)
    failures: list[tuple[CompiledRule, str]] = []
    if cel_old is MISSING and node.batch is not None:
        try:
            results = node.batch.execute(ctx)
        except Exception:  # noqa: BLE001 - evaluate one by one to find the failing rule
            results = None
        if isinstance(results, list) and len(results) == len(node.batch_rules):
            for rule, result in zip(node.batch_rules, results, strict=True):
                if result is not True:
                    failures.append((rule, _failure(rule, result, ctx)))
            return tuple(failures)
    for rule in node.rules:
        if rule.transition and cel_old is MISSING:
            continue
        try:
            result = rule.program.execute(ctx)
        except Exception as exc:  # noqa: BLE001 - any evaluation error rejects the object
            msg = rule.message or f"failed rule: {rule.rule}"
            failures.append((rule, f"{msg} (rule evaluation error: {_short(exc)})"))
            continue
        if result is not True:
            failures.append((rule, _failure(rule, result, ctx)))
    return tuple(failures)


def _failure(rule: CompiledRule, result: Any, ctx: Any) -> str:
    if result is False:
        return rule.failure_message(ctx)
    return f"rule did not evaluate to a bool: {result!r}"


def _short(exc: Exception) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return f"no such key: {exc.args[0]}"
    text = str(exc).split(". Check", 1)[0]
    return text if len(text) < 300 else text[:297] + "..."
