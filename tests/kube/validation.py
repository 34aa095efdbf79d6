"""What kube-apiserver validates on every write of the kinds Portico writes or reads,
and answers with 422 Invalid: object names per kind, labels, ownerReferences,
Service ports, container ports, Ingress and Service load-balancer status,
and immutable fields (a Deployment's selector).

Each check cites the apimachinery/core validation it copies; the messages are
shortened forms of the real ones (the field path first, as kubectl prints them).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
IANA_SVC_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")

# names: Services are DNS-1035 labels (they become DNS names and env vars), Namespaces
# DNS-1123 labels, everything else Portico touches DNS-1123 subdomains
DNS1035_KINDS = {"Service"}
LABEL_KINDS = {"Namespace"}


def is_label(value: str) -> bool:
    return len(value) <= 63 and DNS1123_LABEL.fullmatch(value) is not None


def is_subdomain(value: str) -> bool:
    return len(value) <= 253 and DNS1123_SUBDOMAIN.fullmatch(value) is not None


def is_dns1035(value: str) -> bool:
    return len(value) <= 63 and DNS1035_LABEL.fullmatch(value) is not None


def is_iana_svc_name(value: str) -> bool:
    """validation.IsValidPortName: at most 15 characters, a-z 0-9 and '-', at least one
    letter, no leading, trailing or doubled hyphen."""
    return (len(value) <= 15 and IANA_SVC_NAME.fullmatch(value) is not None and "--" not in value
            and any(c.isalpha() for c in value))


def is_qualified_name(key: str) -> bool:
    """A label or annotation key: an optional DNS-subdomain prefix and a name of at most 63."""
    prefix, _, name = key.rpartition("/")
    return (not prefix or is_subdomain(prefix)) and 0 < len(name) <= 63 and QUALIFIED_NAME.fullmatch(name) is not None


def is_label_value(value: str) -> bool:
    return value == "" or (len(value) <= 63 and QUALIFIED_NAME.fullmatch(value) is not None)


def validate(kind: str, obj: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
    """The reasons kube-apiserver would refuse this write (empty: valid)."""
    errors = _metadata(kind, obj.get("metadata") or {})
    spec = obj.get("spec") or {}
    if kind == "Service":
        errors += _service_ports(spec.get("ports") or [])
        errors += _load_balancer("status.loadBalancer", (obj.get("status") or {}).get("loadBalancer"))
    if kind == "Ingress":
        errors += _load_balancer("status.loadBalancer", (obj.get("status") or {}).get("loadBalancer"))
    if kind == "Deployment":
        errors += _pod_template(spec.get("template") or {})
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if any(labels.get(k) != v for k, v in selector.items()):
            errors.append("spec.template.metadata.labels: Invalid value: `selector` does not match template "
                          "`labels`")
        if old is not None and (old.get("spec") or {}).get("selector") != spec.get("selector"):
            errors.append("spec.selector: Invalid value: field is immutable")
    return errors


def _metadata(kind: str, meta: dict[str, Any]) -> list[str]:
    errors = []
    name = str(meta.get("name") or "")
    check, what = ((is_dns1035, "a DNS-1035 label") if kind in DNS1035_KINDS else
                   (is_label, "a DNS-1123 label") if kind in LABEL_KINDS else (is_subdomain, "a DNS-1123 subdomain"))
    if not check(name):
        errors.append(f"metadata.name: Invalid value: {name!r}: a {kind} name must be {what}")
    for key, value in (meta.get("labels") or {}).items():
        if not is_qualified_name(key):
            errors.append(f"metadata.labels: Invalid value: {key!r}: name part must be a qualified name")
        if not isinstance(value, str) or not is_label_value(value):
            errors.append(f"metadata.labels: Invalid value: {value!r}: a valid label must be 63 characters or "
                          "less and consist of alphanumerics, '-', '_' or '.'")
    for key in meta.get("annotations") or {}:
        if not is_qualified_name(key):
            errors.append(f"metadata.annotations: Invalid value: {key!r}: name part must be a qualified name")
    owners = meta.get("ownerReferences") or []
    for i, ref in enumerate(owners):
        for field in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(field):
                errors.append(f"metadata.ownerReferences[{i}].{field}: Invalid value: \"\": {field} must not be "
                              "empty")
    if sum(bool(r.get("controller")) for r in owners) > 1:
        errors.append("metadata.ownerReferences: Invalid value: only one reference can have Controller set to true")
    return errors


def _service_ports(ports: list[dict[str, Any]]) -> list[str]:
    errors, names, keys = [], set(), set()
    for i, p in enumerate(ports):
        name = p.get("name") or ""
        if len(ports) > 1 and not name:
            errors.append(f"spec.ports[{i}].name: Required value")
        elif name and not is_label(name):
            errors.append(f"spec.ports[{i}].name: Invalid value: {name!r}: must be a DNS-1123 label")
        if name and name in names:
            errors.append(f"spec.ports[{i}].name: Duplicate value: {name!r}")
        names.add(name)
        key = (p.get("port"), p.get("protocol", "TCP"))
        if key in keys:
            errors.append(f"spec.ports[{i}]: Duplicate value: {key}")
        keys.add(key)
    return errors


def _pod_template(template: dict[str, Any]) -> list[str]:
    errors, names = [], set()
    for c in (template.get("spec") or {}).get("containers") or []:
        if not is_label(str(c.get("name", ""))):
            errors.append(f"spec.template.spec.containers.name: Invalid value: {c.get('name')!r}")
        for p in c.get("ports") or []:
            name = p.get("name")
            if name is None:
                continue
            if not is_iana_svc_name(str(name)):
                errors.append(f"spec.template.spec.containers.ports.name: Invalid value: {name!r}: must be an "
                              "IANA_SVC_NAME (at most 15 characters, a-z 0-9 and '-', at least one letter)")
            if name in names:
                errors.append(f"spec.template.spec.containers.ports.name: Duplicate value: {name!r}")
            names.add(name)
    return errors


def _load_balancer(path: str, lb: dict[str, Any] | None) -> list[str]:
    """An ingress point is an `ip` (an IP address) or a `hostname` (a DNS name, never an IP)."""
    errors = []
    for i, point in enumerate((lb or {}).get("ingress") or []):
        if point.get("ip"):
            try:
                ipaddress.ip_address(point["ip"])
            except ValueError:
                errors.append(f"{path}.ingress[{i}].ip: Invalid value: {point['ip']!r}: must be a valid IP address")
        if point.get("hostname"):
            host = point["hostname"]
            if not is_subdomain(host):
                errors.append(f"{path}.ingress[{i}].hostname: Invalid value: {host!r}: must be a DNS-1123 subdomain")
            try:
                ipaddress.ip_address(host)
                errors.append(f"{path}.ingress[{i}].hostname: Invalid value: {host!r}: must be a DNS name, not an "
                              "IP address")
            except ValueError:
                pass
    return errors
