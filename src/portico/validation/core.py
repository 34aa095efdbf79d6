"""Checks the API server makes on the core kinds Portico reads, beyond their metadata.

A Secret's `data` is bytes, written as base64 (`encoding/json` decodes a `[]byte` with the
standard alphabet and padding, skipping line breaks): a value that is not base64 fails to
decode, and the API server answers "illegal base64 data at input byte N" instead of
storing it. Its keys are config keys (`validation.IsConfigMapKey`).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from portico.validation.violation import Violation, shown

_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def core_violations(kind: str, raw: dict[str, Any]) -> list[Violation]:
    if kind == "Secret":
        return secret_violations(raw)
    return []


def secret_violations(raw: dict[str, Any]) -> list[Violation]:
    out: list[Violation] = []
    for field, binary in (("data", True), ("stringData", False)):
        values = raw.get(field)
        if values is None:
            continue
        if not isinstance(values, dict):
            out.append(Violation(field, "must be of type object", "type"))
            continue
        for key, value in values.items():
            path = f"{field}[{shown(str(key))}]"
            if not (isinstance(key, str) and len(key) <= 253 and _CONFIG_KEY.fullmatch(key)):
                out.append(Violation(path, "a valid config key must consist of alphanumeric characters, '-', '_' "
                                           "or '.'", "configKey"))
            if not isinstance(value, str):
                out.append(Violation(path, "must be of type string", "type"))
            elif binary and (problem := base64_problem(value)) is not None:
                out.append(Violation(path, problem, "base64"))  # never the value: it is a secret
    return out


def base64_problem(value: str) -> str | None:
    """Why `value` is not what Go's base64.StdEncoding decodes (None when it is)."""
    text = value.replace("\r", "").replace("\n", "")
    valid = _BASE64.match(text)
    at = valid.end() if valid else 0
    if at < len(text):
        return f"illegal base64 data at input byte {at}"
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return f"illegal base64 data at input byte {len(text) - len(text) % 4 if len(text) % 4 else len(text)}"
    return None
