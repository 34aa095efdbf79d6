"""`portico config-dump -f DIR --infra kubernetes`: the Kubernetes objects each Gateway
in DIR would get from the controller (ServiceAccount, ConfigMap with the Envoy
bootstrap, Secret with its xDS client certificate, Deployment, Service, and a
PorticoProxy's HPA and PDB), rendered offline by `portico.infra.kubernetes.render`
itself, for review before a GitOps change is applied.

Two things only a cluster decides are shown as such: the owner Gateway's uid and the
certificate the controller's CA issues (the Secret's data is a placeholder; no key is
made up and printed)."""

from __future__ import annotations

from typing import Any

from portico.infra.kubernetes import Settings, proxy_parameters, render
from portico.infra.pki import CertificateAuthority
from portico.ir import ParametersRef
from portico.objects import ObjectKey

UID = "<the Gateway's uid, set by the API server>"
ISSUED = "<issued by the controller's CA at apply time>"


def offline_kubernetes_objects(paths: list[str], gateway: str | None = None,
                               settings: Settings | None = None) -> dict[str, list[dict[str, Any]]]:
    """"namespace/name" -> the objects of that Gateway's data plane."""
    from portico.standalone import offline  # (the composition root: imported when asked)

    translated = offline(paths)
    loop = translated.loop
    outputs = loop.last_translation.gateways if loop.last_translation is not None else {}
    ca = CertificateAuthority.create()  # a throwaway: its certificates are replaced by ISSUED

    def spec(ref: ParametersRef | None) -> dict[str, Any] | None:
        if ref is None or (ref.group, ref.kind) != ("gateway.portico.dev", "PorticoProxy"):
            return None
        obj = translated.store.get(ObjectKey(ref.group, ref.kind, ref.namespace, ref.name))
        return dict(obj.raw.get("spec") or {}) if obj is not None else None

    out: dict[str, list[dict[str, Any]]] = {}
    for key, output in sorted(outputs.items()):
        name = f"{key.namespace}/{key.name}"
        if gateway not in (None, name):
            continue
        owner = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "name": key.name, "uid": UID}
        params = proxy_parameters(spec(output.infra.class_parameters), spec(output.infra.parameters))
        objects = render(output.infra, owner, ca, settings or Settings(), (b"", b""), params)
        for obj in objects:
            if obj["kind"] == "Secret":
                obj["data"] = {k: ISSUED for k in obj.get("data") or {}}
        out[name] = objects
    return out
