"""Kubernetes resource quantities in bytes ("64Ki", "1Mi", "2000"), as policies spell sizes."""

from __future__ import annotations

import re

_QUANTITY = re.compile(r"([0-9]+)(Ki|Mi|Gi|k|M|G)?")
_FACTOR = {None: 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "k": 1000, "M": 1000**2, "G": 1000**3}


def quantity_bytes(value: int | str) -> int | None:
    """Bytes, or None when `value` is not a quantity Portico reads."""
    match = _QUANTITY.fullmatch(str(value))
    return int(match[1]) * _FACTOR[match[2]] if match else None
