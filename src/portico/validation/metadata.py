"""ObjectMeta checks (a subset of apimachinery's ValidateObjectMeta)."""

from __future__ import annotations

from typing import Any

from portico.validation.celext import (
    dns1123_label_errors,
    dns1123_subdomain_errors,
    label_value_errors,
    qualified_name_errors,
)
from portico.validation.violation import Violation, shown

_TOTAL_ANNOTATION_SIZE = 256 * 1024


def validate_metadata(meta: Any, *, namespaced: bool) -> list[Violation]:
    out: list[Violation] = []
    if meta is None:
        return [Violation("metadata.name", "Required value: name or generateName is required", "required")]
    if not isinstance(meta, dict):
        return [Violation("metadata", "must be of type object", "type")]
    name = meta.get("name")
    if name is None or name == "":
        out.append(Violation("metadata.name", "Required value: name or generateName is required", "required"))
    elif not isinstance(name, str):
        out.append(Violation("metadata.name", "must be of type string", "type"))
    else:
        for err in dns1123_subdomain_errors(name):
            out.append(Violation("metadata.name", f"Invalid value: {shown(repr(name))}: {err}", "dns1123Subdomain"))
    ns = meta.get("namespace")
    if namespaced and ns not in (None, ""):
        if not isinstance(ns, str):
            out.append(Violation("metadata.namespace", "must be of type string", "type"))
        else:
            for err in dns1123_label_errors(ns):
                out.append(Violation("metadata.namespace", f"Invalid value: {shown(repr(ns))}: {err}", "dns1123Label"))
    labels = meta.get("labels")
    if labels is not None:
        if not isinstance(labels, dict):
            out.append(Violation("metadata.labels", "must be of type object", "type"))
        else:
            for k, v in labels.items():
                for err in qualified_name_errors(str(k)):
                    out.append(Violation("metadata.labels", f"Invalid value: {shown(repr(k))}: {err}", "qualifiedName"))
                if not isinstance(v, str):
                    out.append(Violation(f"metadata.labels.{k}", "must be of type string", "type"))
                else:
                    for err in label_value_errors(v):
                        out.append(Violation(f"metadata.labels.{k}", f"Invalid value: {shown(repr(v))}: {err}",
                                             "labelValue"))
    annotations = meta.get("annotations")
    if annotations is not None:
        if not isinstance(annotations, dict):
            out.append(Violation("metadata.annotations", "must be of type object", "type"))
        else:
            total = 0
            for k, v in annotations.items():
                for err in qualified_name_errors(str(k).lower()):
                    out.append(Violation("metadata.annotations", f"Invalid value: {shown(repr(k))}: {err}",
                                         "qualifiedName"))
                if not isinstance(v, str):
                    out.append(Violation(f"metadata.annotations.{k}", "must be of type string", "type"))
                else:
                    total += len(str(k)) + len(v)
            if total > _TOTAL_ANNOTATION_SIZE:
                out.append(
                    Violation(
                        "metadata.annotations",
                        f"Too long: must have at most {_TOTAL_ANNOTATION_SIZE} bytes",
                        "maxLength",
                    )
                )
    return out
