"""CEL as the Kubernetes API server runs it, on top of ``common-expression-language``.

The Rust-backed ``cel`` package evaluates the CEL core (macros, ``duration``,
``matches`` with RE2-like syntax, commutative ``&&``/``||`` error absorption).
Its ``cel.stdlib`` adds cel-go's strings/lists/sets extensions.  This module adds
the Kubernetes CEL libraries the Gateway API CRDs (and CRDs like them) use:
``isSorted``/``indexOf`` on lists, ``isIP``/``ip``/``cidr``, ``isURL``/``url``
and ``format.<name>().validate(s)``, and the property-name escaping Kubernetes
applies (``namespace`` is a CEL reserved word, so rules say ``__namespace__``).
"""

from __future__ import annotations

import ipaddress
import re
import threading
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cel
from cel.stdlib import STDLIB_FUNCTIONS

# --- property name escaping (k8s.io/apiserver/pkg/cel/escaping.go) ----------

CEL_RESERVED = frozenset(
    {
        "true", "false", "null", "in", "as", "break", "const", "continue", "else",
        "for", "function", "if", "import", "let", "loop", "package", "namespace",
        "return", "var", "void", "while",
    }
)  # fmt: skip
_PLAIN_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_ESCAPABLE = re.compile(r"^[a-zA-Z_.\-/][a-zA-Z0-9_.\-/]*$")


def escape_property(name: str) -> str | None:
    """The name under which CEL sees a property; None if CEL cannot access it."""
    if name in CEL_RESERVED:
        return f"__{name}__"
    if _PLAIN_NAME.match(name) and "__" not in name:
        return name
    if not _ESCAPABLE.match(name):
        return None
    return (
        name.replace("__", "__underscores__").replace(".", "__dot__").replace("-", "__dash__").replace("/", "__slash__")
    )


# --- Kubernetes library functions ---------------------------------------------

_IP_KEY = "__k8s_ip__"
_CIDR_KEY = "__k8s_cidr__"
_URL_KEY = "__k8s_url__"
_FORMAT_KEY = "__k8s_format__"


def _is_ip(s: str) -> bool:
    if "%" in s:  # zones are rejected by the Kubernetes ip library
        return False
    try:
        addr = ipaddress.ip_address(s)
    except ValueError:
        return False
    # IPv4-mapped IPv6 addresses are rejected too
    return not (isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None)


def _ip(s: str) -> dict[str, str]:
    if not _is_ip(s):
        raise ValueError(f"IP Address {s!r} parse error during conversion from string")
    return {_IP_KEY: str(ipaddress.ip_address(s))}


def _is_cidr(s: str) -> bool:
    try:
        ipaddress.ip_network(s, strict=False)
    except ValueError:
        return False
    return "/" in s and _is_ip(s.split("/", 1)[0])


def _cidr(s: str) -> dict[str, str]:
    if not _is_cidr(s):
        raise ValueError(f"network address {s!r} parse error during conversion from string")
    return {_CIDR_KEY: s}


def _as_ip(v: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(v, Mapping) and _IP_KEY in v:
        return ipaddress.ip_address(v[_IP_KEY])
    if isinstance(v, str):
        return ipaddress.ip_address(v)
    raise TypeError("no such overload")


def _as_net(v: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if isinstance(v, Mapping) and _CIDR_KEY in v:
        return ipaddress.ip_network(v[_CIDR_KEY], strict=False)
    if isinstance(v, str):
        return ipaddress.ip_network(v, strict=False)
    raise TypeError("no such overload")


def _ip_or_cidr_ip(v: Any) -> dict[str, str]:
    """``ip(string)`` and ``cidr.ip()``."""
    if isinstance(v, Mapping) and _CIDR_KEY in v:
        return {_IP_KEY: v[_CIDR_KEY].split("/", 1)[0]}
    return _ip(v)


def _family(v: Any) -> int:
    return _as_ip(v).version


def _contains_ip(net: Any, ip: Any) -> bool:
    return _as_ip(ip) in _as_net(net)


def _contains_cidr(net: Any, other: Any) -> bool:
    inner = _as_net(other)
    outer = _as_net(net)
    return inner.version == outer.version and inner.subnet_of(outer)  # type: ignore[arg-type]


def _prefix_length(net: Any) -> int:
    return _as_net(net).prefixlen


def _masked(net: Any) -> dict[str, str]:
    return {_CIDR_KEY: str(_as_net(net))}


def _is_url(s: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(s)
    except ValueError:
        return False
    return bool(parts.scheme) or s.startswith("/")


def _url(s: str) -> dict[str, str]:
    if not _is_url(s):
        raise ValueError(f"URL {s!r} parse error during conversion from string")
    return {_URL_KEY: s}


def _url_part(name: str) -> Callable[[Any], str]:
    def get(u: Any) -> str:
        parts = urllib.parse.urlsplit(str(u[_URL_KEY]))
        if name == "scheme":
            return parts.scheme
        if name == "host":
            return parts.netloc.rsplit("@", 1)[-1]
        if name == "hostname":
            return parts.hostname or ""
        if name == "port":
            return str(parts.port) if parts.port is not None else ""
        if name == "path":
            return parts.path
        return parts.query

    return get


_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


def dns1123_label_errors(s: str) -> list[str]:
    errs = []
    if len(s) > 63:
        errs.append("must be no more than 63 characters")
    if not _DNS1123_LABEL.match(s):
        errs.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
            "and must start and end with an alphanumeric character"
        )
    return errs


def dns1123_subdomain_errors(s: str) -> list[str]:
    errs = []
    if len(s) > 253:
        errs.append("must be no more than 253 characters")
    if not _DNS1123_SUBDOMAIN.match(s):
        errs.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character"
        )
    return errs


def qualified_name_errors(s: str) -> list[str]:
    prefix, sep, name = s.rpartition("/")
    errs = []
    if sep:
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend(f"prefix part {e}" for e in dns1123_subdomain_errors(prefix))
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    elif not _QUALIFIED_NAME.match(name):
        errs.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character"
        )
    return errs


def label_value_errors(s: str) -> list[str]:
    errs = []
    if len(s) > 63:
        errs.append("must be no more than 63 characters")
    if not _LABEL_VALUE.match(s):
        errs.append(
            "a valid label must be an empty string or consist of alphanumeric characters, "
            "'-', '_' or '.', and must start and end with an alphanumeric character"
        )
    return errs


def _dns1035_label_errors(s: str) -> list[str]:
    errs = []
    if len(s) > 63:
        errs.append("must be no more than 63 characters")
    if not _DNS1035_LABEL.match(s):
        errs.append(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
            "start with an alphabetic character, and end with an alphanumeric character"
        )
    return errs


def _uuid_errors(s: str) -> list[str]:
    return [] if _UUID.match(s) else ["does not match the UUID format"]


def _uri_errors(s: str) -> list[str]:
    return [] if _is_url(s) else ["invalid URI"]


FORMATS: dict[str, Callable[[str], list[str]]] = {
    "dns1123Label": dns1123_label_errors,
    "dns1123Subdomain": dns1123_subdomain_errors,
    "dns1035Label": _dns1035_label_errors,
    "qualifiedName": qualified_name_errors,
    "labelValue": label_value_errors,
    "uri": _uri_errors,
    "uuid": _uuid_errors,
}


def _format_factory(name: str) -> Callable[..., dict[str, str]]:
    def factory(*_receiver: Any) -> dict[str, str]:
        return {_FORMAT_KEY: name}

    return factory


def _format_validate(fmt: Any, s: str) -> list[str] | None:
    """``format.X().validate(s)``: null when valid, else the list of errors."""
    if not (isinstance(fmt, Mapping) and _FORMAT_KEY in fmt):
        raise TypeError("no such overload")
    errs = FORMATS[fmt[_FORMAT_KEY]](s)
    return errs or None


def _is_sorted(items: list[Any]) -> bool:
    return all(a <= b for a, b in zip(items, items[1:], strict=False))


_std_index_of = STDLIB_FUNCTIONS["indexOf"]
_std_last_index_of = STDLIB_FUNCTIONS["lastIndexOf"]


def _index_of(target: Any, item: Any, *rest: Any) -> int:
    if isinstance(target, list):
        for i, x in enumerate(target):
            if x == item and type(x) is type(item):
                return i
        return -1
    return int(_std_index_of(target, item, *rest))


def _last_index_of(target: Any, item: Any, *rest: Any) -> int:
    if isinstance(target, list):
        for i in range(len(target) - 1, -1, -1):
            if target[i] == item and type(target[i]) is type(item):
                return i
        return -1
    return int(_std_last_index_of(target, item, *rest))


def _find(s: str, pattern: str) -> str:
    m = re.search(pattern, s)
    return m.group(0) if m else ""


def _find_all(s: str, pattern: str, limit: int = -1) -> list[str]:
    found = [m.group(0) for m in re.finditer(pattern, s)]
    return found if limit < 0 else found[:limit]


def _is_loopback(v: Any) -> bool:
    return _as_ip(v).is_loopback


def _is_unspecified(v: Any) -> bool:
    return _as_ip(v).is_unspecified


def _is_global_unicast(v: Any) -> bool:
    a = _as_ip(v)
    return not (a.is_multicast or a.is_loopback or a.is_link_local or a.is_unspecified) and not (
        isinstance(a, ipaddress.IPv4Address) and a == ipaddress.IPv4Address("255.255.255.255")
    )


def _is_link_local_multicast(v: Any) -> bool:
    a = _as_ip(v)
    if isinstance(a, ipaddress.IPv4Address):
        return a in ipaddress.ip_network("224.0.0.0/24")
    return a in ipaddress.ip_network("ff02::/16")


def _is_link_local_unicast(v: Any) -> bool:
    a = _as_ip(v)
    return a.is_link_local and not a.is_multicast


# --- `matches` with cached regexes ---------------------------------------------------

# The runtime's own matches() compiles its regex on every call (tens of microseconds);
# rules are rewritten to call this one instead, which caches compiled patterns.
MATCHES_FUNCTION = "k8sRegexMatches"
_regex_cache: dict[str, re.Pattern[str]] = {}
_FLAG_GROUP = re.compile(r"\(\?([imsU-]+)\)")


def go_regex(pattern: str) -> re.Pattern[str]:
    """Compile an RE2 (Go) pattern with Python's ``re``: ``$`` means end of text (cached)."""
    compiled = _regex_cache.get(pattern)
    if compiled is not None:
        return compiled
    out: list[str] = []
    i = 0
    in_class = False
    # RE2 lets a flag group like (?i) stand anywhere, applying to the rest of the enclosing
    # group; Python wants them first, so they become scoped groups (?i:...) closed with it
    pending = [0]
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
        elif ch == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "]":  # a literal ']' first in the class
                out.append("[]")
                i += 2
                continue
        elif ch == "(":
            flags = _FLAG_GROUP.match(pattern, i)
            if flags is not None:
                out.append(f"(?{flags.group(1)}:")
                pending[-1] += 1
                i = flags.end()
                continue
            pending.append(0)
        elif ch == ")":
            out.append(")" * (pending.pop() if len(pending) > 1 else 0))
        elif ch == "$":
            ch = r"\Z"
        out.append(ch)
        i += 1
    out.append(")" * pending[0])
    compiled = re.compile("".join(out))
    if len(_regex_cache) < 4096:
        _regex_cache[pattern] = compiled
    return compiled


def _matches(s: str, pattern: str) -> bool:
    return go_regex(pattern).search(s) is not None


_STRING_START = re.compile(r"""([rRbB]{0,2})('''|\"\"\"|'|")""")
_MATCHES_CALL = re.compile(r"(?<![A-Za-z0-9_])matches(?=\s*\()")


def rewrite_matches(rule: str) -> str:
    """rule with every ``matches(`` call (method or global) renamed to MATCHES_FUNCTION.

    String literals are left alone; so are fields named ``matches`` (no call).
    """
    out: list[str] = []
    i = 0
    code_start = 0
    n = len(rule)
    while i < n:
        m = _STRING_START.match(rule, i)
        if m is not None and (i == 0 or not (rule[i - 1].isalnum() or rule[i - 1] == "_")):
            prefix, quote = m.group(1), m.group(2)
            raw = "r" in prefix.lower()
            out.append(_MATCHES_CALL.sub(MATCHES_FUNCTION, rule[code_start:i]))
            j = m.end()
            while j < n:
                if not raw and rule[j] == "\\":
                    j += 2
                    continue
                if rule.startswith(quote, j):
                    j += len(quote)
                    break
                j += 1
            out.append(rule[i:j])
            i = code_start = j
            continue
        i += 1
    out.append(_MATCHES_CALL.sub(MATCHES_FUNCTION, rule[code_start:]))
    return "".join(out)


K8S_FUNCTIONS: dict[str, Callable[..., Any]] = {
    **STDLIB_FUNCTIONS,
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "isSorted": _is_sorted,
    "find": _find,
    "findAll": _find_all,
    "isIP": _is_ip,
    "ip": _ip_or_cidr_ip,
    "ip.isCanonical": lambda s: _is_ip(s) and str(ipaddress.ip_address(s)) == s,
    "family": _family,
    "isUnspecified": _is_unspecified,
    "isLoopback": _is_loopback,
    "isGlobalUnicast": _is_global_unicast,
    "isLinkLocalMulticast": _is_link_local_multicast,
    "isLinkLocalUnicast": _is_link_local_unicast,
    "isCIDR": _is_cidr,
    "cidr": _cidr,
    "containsIP": _contains_ip,
    "containsCIDR": _contains_cidr,
    "prefixLength": _prefix_length,
    "masked": _masked,
    "isURL": _is_url,
    "url": _url,
    "getScheme": _url_part("scheme"),
    "getHost": _url_part("host"),
    "getHostname": _url_part("hostname"),
    "getPort": _url_part("port"),
    "getEscapedPath": _url_part("path"),
    "getQuery": lambda u: {k: v for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(u[_URL_KEY]).query).items()},
    "validate": _format_validate,
    MATCHES_FUNCTION: _matches,
    **{name: _format_factory(name) for name in FORMATS},
}
# `format` is a variable (the receiver of format.dns1123Label()); its value is unused
BASE_VARIABLES: dict[str, Any] = {"format": {}}


def new_context(variables: Mapping[str, Any]) -> cel.Context:
    """A fresh context with the Kubernetes functions and the given variables."""
    ctx = cel.Context(dict(BASE_VARIABLES), K8S_FUNCTIONS)
    for name, value in variables.items():
        ctx.add_variable(name, value)
    return ctx


_local = threading.local()


def reusable_context() -> cel.Context:
    """This thread's context (registering the functions costs more than most evaluations).

    Callers set every variable they use (``self``, ``oldSelf``) before each evaluation.
    """
    ctx: cel.Context | None = getattr(_local, "ctx", None)
    if ctx is None:
        ctx = new_context({})
        _local.ctx = ctx
    return ctx


# --- compiled rules -------------------------------------------------------------

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _identifiers(rule: str) -> frozenset[str]:
    """Every identifier and string-literal word in a rule (used to prune CEL inputs)."""
    return frozenset(_IDENT.findall(rule))


def references_old_self(rule: str) -> bool:
    return "oldSelf" in _identifiers(rule)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    rule: str
    message: str | None
    message_expression: str | None
    field_path: str | None
    reason: str | None
    program: Any  # cel.Program
    message_program: Any | None  # cel.Program
    transition: bool  # references oldSelf

    def failure_message(self, ctx: cel.Context) -> str:
        if self.message_program is not None:
            try:
                msg = self.message_program.execute(ctx)
            except Exception:  # noqa: BLE001 - k8s falls back to message on any error
                msg = None
            if isinstance(msg, str) and msg.strip() and "\n" not in msg:
                return msg
        if self.message:
            return self.message
        return f"failed rule: {self.rule}"


class RuleCompileError(ValueError):
    pass


def compile_rule(spec: Mapping[str, Any]) -> CompiledRule:
    rule = str(spec.get("rule", ""))
    try:
        program = cel.compile(rewrite_matches(rule))
    except Exception as exc:  # noqa: BLE001 - surface every parser failure the same way
        raise RuleCompileError(f"rule compile error: {rule!r}: {exc}") from exc
    message_expression = spec.get("messageExpression")
    message_program = None
    if message_expression:
        try:
            message_program = cel.compile(rewrite_matches(str(message_expression)))
        except Exception as exc:  # noqa: BLE001
            raise RuleCompileError(f"messageExpression compile error: {message_expression!r}: {exc}") from exc
    return CompiledRule(
        rule=rule,
        message=spec.get("message"),
        message_expression=message_expression,
        field_path=spec.get("fieldPath"),
        reason=spec.get("reason"),
        program=program,
        message_program=message_program,
        transition=references_old_self(rule),
    )


def compile_batch(rules: Sequence[CompiledRule]) -> Any | None:
    """One program evaluating several rules at once (a list of their results), or None."""
    if len(rules) < 2:
        return None
    try:
        return cel.compile("[" + ", ".join(f"({rewrite_matches(r.rule)}\n)" for r in rules) + "]")
    except Exception:  # noqa: BLE001 - the rules are then evaluated one by one
        return None
