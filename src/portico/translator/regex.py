"""Regular expressions as Envoy runs them: RE2 (google-re2, the library Envoy links),
matched against the whole value, with Envoy's default limit on program size.

The Gateway API leaves the regex dialect to the implementation ("implementation-
specific"); Portico's is RE2, so an expression is checked here with RE2 itself
(not Python's `re`, which accepts look-arounds and backreferences RE2 rejects, and
rejects some RE2 syntax): a rule with an expression Envoy would reject is dropped
with `UnsupportedValue` instead of breaking the whole route configuration.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import re2

from portico.translator.conditions import Cond

# Envoy's `re2.max_program_size.error_level` default: larger programs are NACKed
# ("RE2 program size of N > max program size of 100 set for the error level threshold").
MAX_PROGRAM_SIZE = 100

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the reason is reported as a condition, not on stderr


@functools.lru_cache(maxsize=4096)
def regex_problem(expr: str) -> str:
    """Why Envoy would reject `expr` ("" when it accepts it)."""
    try:
        compiled = re2.compile(expr, _OPTIONS)
    except re2.error as e:
        reason = e.args[0] if e.args else str(e)
        text = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
        return f"invalid RE2 regular expression {expr!r}: {text}"
    size = int(compiled.programsize)
    if size > MAX_PROGRAM_SIZE:
        return f"regular expression {expr!r} is too complex for Envoy (RE2 program size {size} > {MAX_PROGRAM_SIZE})"
    return ""


def regexes_problem(exprs: Iterable[str]) -> Cond | None:
    """The rule condition for the first expression Envoy would reject (Accepted=False,
    UnsupportedValue: the rule is dropped), or None."""
    for expr in exprs:
        problem = regex_problem(expr)
        if problem:
            return Cond("Accepted", False, "UnsupportedValue", problem)
    return None
