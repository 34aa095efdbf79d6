"""What the API server checks before it stores an object, for standalone mode.

``validate(raw)`` returns the violations of a Gateway API object against the CRD
schemas shipped in ``portico/crds``: OpenAPI v3 structural checks, the
Kubernetes list-type extensions and the CRDs' CEL rules (``x-kubernetes-
validations``), evaluated after defaulting, as the API server does.
``apply_defaults(raw)`` returns the defaulted copy that should be stored.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

from portico import kinds
from portico.validation import celrepl  # noqa: F401 (first: cel's REPL is not loaded until used)
from portico.validation.core import core_violations
from portico.validation.crds import CRDVersion, Registry, default_registry
from portico.validation.metadata import validate_metadata
from portico.validation.schema import (
    BLOCKING,
    MISSING,
    check_rules,
    check_structure,
    prune_and_default,
)
from portico.validation.violation import Violation, shown

__all__ = ["Violation", "apply_defaults", "validate", "lookup_crd", "CORE_KINDS"]

# built-in kinds the translator reads (`portico.kinds`); they get the metadata checks only
CORE_KINDS: dict[tuple[str, str, str], bool] = {  # (group, version, kind) -> namespaced
    (k.group, version, k.kind): k.namespaced for k in kinds.KINDS if not k.crd and k.model for version in k.versions
}

# Built-in kinds of the API groups Portico reads (a kind not listed in a listed group and
# version is a typo: the API server answers "no matches for kind"); other groups pass.
BUILTIN_KINDS: dict[tuple[str, str], set[str]] = {
    ("", "v1"): {"Binding", "ComponentStatus", "ConfigMap", "Endpoints", "Event", "LimitRange", "Namespace", "Node",
                 "PersistentVolume", "PersistentVolumeClaim", "Pod", "PodTemplate", "ReplicationController",
                 "ResourceQuota", "Secret", "Service", "ServiceAccount", "List"},
    ("discovery.k8s.io", "v1"): {"EndpointSlice"},
    ("networking.k8s.io", "v1"): {"Ingress", "IngressClass", "NetworkPolicy", "IPAddress", "ServiceCIDR"},
}

_NOT_CHECKED = (
    "some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)


def _misspelled_builtin(group: str, version: str, kind: str, reg: Registry) -> bool:
    """A kind Portico reads under a group-version no API server serves: the core group in
    another version than v1 (`v2`, `V1`, `v1beta1`, `"v1 "`), a built-in group in another
    version (`discovery.k8s.io/v2`), or a group that is not a DNS name (`core/v1`: the core
    group has no name; every non-built-in group has a dot). Such a
    document is an error, as there: read as its kind it would be (a Secret used as a
    certificate), compared as a string it would not (its data shown unredacted)."""
    known = {k for (_, _, k) in CORE_KINDS} | {crd.kind for crd in reg.all()}
    of_group = {k for (g, _), names in BUILTIN_KINDS.items() if g == group for k in names}
    return kind in known and (group == "" or "." not in group or kind in of_group)


def _split_api_version(api_version: str) -> tuple[str, str]:
    if "/" in api_version:
        group, version = api_version.rsplit("/", 1)
        return group, version
    return "", api_version


def lookup_crd(raw: dict[str, Any], registry: Registry | None = None) -> CRDVersion | None:
    """The served CRD version that governs raw, or None."""
    reg = registry or default_registry()
    group, version = _split_api_version(str(raw.get("apiVersion") or ""))
    return reg.lookup(group, version, str(raw.get("kind") or ""))


def apply_defaults(raw: dict[str, Any], registry: Registry | None = None) -> dict[str, Any]:
    """A copy of raw as the API server would store it: unknown fields pruned, defaults applied.

    Objects of kinds without a CRD are returned as a (deep) copy, unchanged.
    """
    reg = registry or default_registry()
    crd = lookup_crd(raw, reg)
    if crd is None:
        return json.loads(json.dumps(raw, default=str))  # type: ignore[no-any-return]
    out, _ = _prepare(raw, crd, reg)
    return out


def _prepare(raw: dict[str, Any], crd: CRDVersion, reg: Registry) -> tuple[dict[str, Any], list[Violation]]:
    node = reg.schema(crd)
    unknown: list[Violation] = []
    status = raw.get("status", None) if crd.status_subresource else None
    # metadata is ObjectMeta (validated apart), not pruned by the CRD schema
    body = {k: v for k, v in raw.items() if k != "metadata" and not (crd.status_subresource and k == "status")}
    out = prune_and_default(node, body, (), unknown)
    if "metadata" in raw:
        out = {"metadata": json.loads(json.dumps(raw["metadata"], default=str)), **out}
    if status is not None:
        out["status"] = json.loads(json.dumps(status, default=str))
    return out, unknown


_CACHE_SIZE = 65536
_cache: OrderedDict[bytes, tuple[Violation, ...]] = OrderedDict()
_cache_lock = threading.Lock()


def _digest(raw: dict[str, Any]) -> bytes | None:
    try:
        text = json.dumps(raw, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return None
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def validate(
    raw: dict[str, Any],
    old: dict[str, Any] | None = None,
    *,
    registry: Registry | None = None,
) -> list[Violation]:
    """The violations that would make the API server reject raw ([] when it's valid).

    old is the previous version of the same object: when given, transition rules (those
    that reference ``oldSelf``) are evaluated too; otherwise they are skipped, as on create.
    Kinds without a CRD get no checks beyond the basics (core kinds: metadata).
    Results for identical objects are cached (keyed by a digest of their content).
    """
    key = _digest(raw) if old is None and registry is None else None
    if key is not None:
        with _cache_lock:
            hit = _cache.get(key)
            if hit is not None:
                _cache.move_to_end(key)
                return list(hit)
    result, _ = _validate(raw, old, registry or default_registry())
    if key is not None:
        with _cache_lock:
            _cache[key] = tuple(result)
            if len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    return result


def compile_all(registry: Registry | None = None) -> None:
    """Compile every CRD's schema now (about 70 ms for the shipped ones): the first object
    of a kind, often a user's first change after a start, does not wait for it."""
    reg = registry or default_registry()
    for crd in reg.all():
        reg.schema(crd)


def checked(raw: dict[str, Any], old: dict[str, Any] | None = None) -> tuple[list[Violation], dict[str, Any]]:
    """`validate` and `apply_defaults` of one object in one pass over its schema (an
    API server's admission): the violations, and a copy of the object as it would be stored."""
    reg = default_registry()
    violations, prepared = _validate(raw, old, reg)
    return violations, prepared if prepared is not None else apply_defaults(raw, reg)


def _validate(raw: dict[str, Any], old: dict[str, Any] | None, reg: Registry
              ) -> tuple[list[Violation], dict[str, Any] | None]:
    """The violations, and the object pruned and defaulted when it has a CRD (else None)."""
    if not isinstance(raw, dict):
        return [Violation("", "object must be a mapping", "type")], None
    out: list[Violation] = []
    api_version = raw.get("apiVersion")
    kind = raw.get("kind")
    if not api_version:
        out.append(Violation("apiVersion", "Required value", "required"))
    if not kind:
        out.append(Violation("kind", "Required value", "required"))
    if out:
        return out, None
    group, version = _split_api_version(str(api_version))
    crd = reg.lookup(group, version, str(kind))
    if crd is None:
        core = CORE_KINDS.get((group, version, str(kind)))
        if core is not None:
            return validate_metadata(raw.get("metadata"), namespaced=core) + core_violations(str(kind), raw), None
        if (reg.kinds(group) or str(kind) not in BUILTIN_KINDS.get((group, version), {str(kind)})
                or _misspelled_builtin(group, version, str(kind), reg)):
            # a group the API server knows (a CRD's, or a built-in one) without this kind here
            return [
                Violation(
                    "apiVersion",
                    f'no matches for kind "{shown(str(kind))}" in version "{shown(str(api_version))}"',
                    "apiVersion",
                )
            ], None
        return [], None
    out.extend(validate_metadata(raw.get("metadata"), namespaced=crd.scope == "Namespaced"))
    prepared, unknown = _prepare(raw, crd, reg)
    out.extend(unknown)
    obj = {k: v for k, v in prepared.items() if k != "status"} if crd.status_subresource else prepared
    node = reg.schema(crd)
    structural: list[Violation] = []
    check_structure(node, obj, (), structural)
    out.extend(structural)
    if any(v.rule in BLOCKING for v in structural):
        out.append(Violation("", _NOT_CHECKED, None))
        return out, prepared
    old_obj: Any = None
    if old is not None:
        old_obj, _ = _prepare(old, crd, reg)
        old_obj.pop("status", None)
    check_rules(node, obj, old_obj if old_obj is not None else MISSING, (), out)
    return out, prepared
