"""`portico install render`: everything a cluster needs to run Portico, as YAML for
`kubectl apply --server-side -f -`.

- The Gateway API CRDs (experimental channel, the ones Portico bundles).
- The `portico-system` namespace, the controller's ServiceAccount and RBAC, exactly
  what the controller does (an audit test against the strict API server double
  compares the two): list and watch every kind it watches; patch the status of the
  kinds whose status it writes (and get them, to re-read one after a conflict);
  create, patch (server-side apply), watch and delete only the kinds it creates per
  Gateway (ServiceAccounts, ConfigMaps, Secrets, Deployments, Services, and a
  PorticoProxy's HorizontalPodAutoscaler and PodDisruptionBudget: repaired on drift,
  pruned when no longer wanted), and update the finalizers of
  their owners (Gateways, IngressClasses: blockOwnerDeletion needs it where the
  OwnerReferencesPermissionEnforcement admission plugin runs); Leases and its CA Secret in
  its own namespace only. Kubernetes RBAC cannot narrow writes to objects a
  controller created (no label conditions), so those verbs are cluster-wide for
  those kinds.
- The controller Deployment (2 replicas, leader-elected, probes, requests) and the
  `portico-xds` Service Envoy pods reach. No admin token: the render is
  deterministic (rendering again gives byte-identical YAML, so applying it again
  changes nothing); the controller creates the Secret `portico-admin-token` once,
  at its first start (`portico.admintoken`), and its Deployment reads it from there.
- ClusterRoles for the Gateway API's three personas, aggregated to the built-in
  roles: infrastructure provider (GatewayClasses), cluster operator (Gateways,
  ListenerSets, ReferenceGrants, BackendTLSPolicies; aggregated to admin) and
  application developer (routes; aggregated to admin and edit); every Gateway
  API kind is readable by view. Portico's Backend (any address, FQDN or IP) is the
  cluster operator's: it is not aggregated to edit.
"""

from __future__ import annotations

import importlib.resources
from typing import Any

import yaml

from portico import CONTROLLER_NAME, __version__, kinds
from portico.provider.kubernetes import KINDS
from portico.translator.gateway import BUNDLE_VERSION, bundled_version

NAME = "portico-controller"
LABELS = {"app.kubernetes.io/name": "portico", "app.kubernetes.io/component": "controller"}
# the API groups of the kinds the personas manage
GATEWAY_GROUPS = tuple(sorted({k.group for k in kinds.KINDS if k.persona}))
CREATED = {"": ["serviceaccounts", "configmaps", "secrets", "services"], "apps": ["deployments"],
           "autoscaling": ["horizontalpodautoscalers"], "policy": ["poddisruptionbudgets"]}
APPLY = ["create", "patch"]  # server-side apply: patch, and create for an object not there yet
EVENTS = {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}  # warnings on Ingresses
# persona -> (the resources it manages, the built-in roles its ClusterRole aggregates to)
PERSONAS: dict[str, tuple[list[str], tuple[str, ...]]] = {
    persona: ([k.plural for k in kinds.KINDS if k.persona == persona], aggregate)
    for persona, aggregate in (("infrastructure-provider", ()), ("cluster-operator", ("admin",)),
                               ("application-developer", ("admin", "edit")))
}
WRITE = ["create", "update", "patch", "delete", "deletecollection"]
READ = ["get", "list", "watch"]
WATCH = ["list", "watch"]
PORTICO_VERSION = "gateway.portico.dev/version"  # on Portico's own CRDs: the release that installed them


def crds() -> list[dict[str, Any]]:
    """The bundled Gateway API CRDs, their bundle-version annotation the Gateway API version
    they come from (the vendored files, from upstream's main branch, say v0.0.0-dev), and
    Portico's own CRDs labelled with Portico's version."""
    folder = importlib.resources.files("portico") / "crds"
    docs: list[dict[str, Any]] = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(entry.read_text()) if d]
    for doc in docs:
        annotations = doc["metadata"].setdefault("annotations", {})
        if BUNDLE_VERSION in annotations:
            annotations[BUNDLE_VERSION] = bundled_version()
        if doc.get("spec", {}).get("group", "").endswith("portico.dev"):
            annotations[PORTICO_VERSION] = __version__
        # the safe-upgrades policy admits v0.0.0-dev or v1.5+: ours is a v1.5 pre-release
    return docs


def render(namespace: str = "portico-system", image: str = "", replicas: int = 2) -> list[dict[str, Any]]:
    """Every object of an install, the same on every call (no secret: see the module docstring)."""
    image = image or f"ghcr.io/portico-dev/portico:{__version__}"
    meta = {"namespace": namespace, "labels": LABELS}
    return [
        *crds(),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": LABELS}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME, **meta}},
        cluster_role(),
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": NAME, "labels": LABELS},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
         "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": NAME, **meta},
         "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                    "verbs": ["get", "create", "update"]},
                   {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": NAME, **meta},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
         "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}]},
        deployment(namespace, image, replicas),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "portico-xds", **meta},
         "spec": {"selector": LABELS, "ports": [{"name": "xds", "port": 18000, "targetPort": 18000}]}},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": NAME, **meta},
         "spec": {"minAvailable": 1, "selector": {"matchLabels": LABELS}}},
        *persona_roles(),
    ]


def cluster_role() -> dict[str, Any]:
    by_group: dict[str, list[str]] = {}
    for kind in KINDS:
        by_group.setdefault(kind.group, []).append(kind.plural)
    rules = [{"apiGroups": [group], "resources": sorted(plurals), "verbs": WATCH}
             for group, plurals in sorted(by_group.items())]
    status: dict[str, list[str]] = {}
    for kind in KINDS:
        if (kind.group, kind.kind) in kinds.STATUS_OURS:
            status.setdefault(kind.group, []).append(kind.plural)
    # the status writer patches /status, and reads the object again after a conflict
    rules += [{"apiGroups": [group], "resources": sorted(plurals), "verbs": ["get"]}
              for group, plurals in status.items()]
    rules += [{"apiGroups": [group], "resources": sorted(f"{p}/status" for p in plurals), "verbs": ["patch"]}
              for group, plurals in status.items()]
    # what it generates per Gateway: applied, watched by label (drift), deleted when no
    # longer wanted (pruning: a Gateway moved to another class, an HPA removed)
    rules += [{"apiGroups": [group], "resources": plurals, "verbs": [*APPLY, "delete", *WATCH]}
              for group, plurals in sorted(CREATED.items())]
    # generated objects name their owner (the Gateway; for Ingresses, their IngressClass) with
    # blockOwnerDeletion, which the OwnerReferencesPermissionEnforcement admission plugin
    # (OpenShift, hardened clusters) allows only to whom may update the owner's finalizers
    rules += [{"apiGroups": ["gateway.networking.k8s.io"], "resources": ["gateways/finalizers"], "verbs": ["update"]},
              {"apiGroups": ["networking.k8s.io"], "resources": ["ingressclasses/finalizers"], "verbs": ["update"]}]
    # the gateway-exists finalizer on GatewayClasses of ours (portico.finalizers)
    rules.append({"apiGroups": ["gateway.networking.k8s.io"], "resources": ["gatewayclasses"], "verbs": ["patch"]})
    rules.append(EVENTS)
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": NAME, "labels": LABELS}, "rules": rules}


def deployment(namespace: str, image: str, replicas: int) -> dict[str, Any]:
    # liveness never depends on the sync (a slow first LIST, a kind that keeps failing: not
    # a reason to restart); readiness is the first complete sync; the startup probe gives a
    # slow start (imports, CRD schemas compiled) a minute before liveness counts
    live = {"httpGet": {"path": "/livez", "port": 9912}, "periodSeconds": 10}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME, "namespace": namespace,
                                                                       "labels": LABELS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": LABELS}, "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "serviceAccountName": NAME,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65532,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "controller", "image": image,
                        "args": ["controller", "--controller-name", CONTROLLER_NAME,
                                 "--health-address", "0.0.0.0:9912", "--xds-address", "0.0.0.0:18000",
                                 "--xds-service", f"portico-xds.{namespace}.svc",
                                 # the Envoy pods' shutdown manager runs the controller's own image
                                 "--shutdown-manager-image", image],
                        "env": [{"name": "POD_NAMESPACE",
                                 "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                                {"name": "PORTICO_ADMIN_TOKEN", "valueFrom": {"secretKeyRef": {
                                    "name": "portico-admin-token", "key": "token", "optional": True}}}],
                        "ports": [{"name": "health", "containerPort": 9912}, {"name": "xds", "containerPort": 18000}],
                        "startupProbe": {**live, "periodSeconds": 2, "failureThreshold": 30},
                        "livenessProbe": live,
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 9912}, "periodSeconds": 5},
                        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
                        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "state", "mountPath": "/tmp"}],
                    }],
                    "volumes": [{"name": "state", "emptyDir": {}}],
                },
            }}}


def persona_roles() -> list[dict[str, Any]]:
    roles = []
    for persona, (resources, aggregate) in PERSONAS.items():
        labels = {**LABELS, **{f"rbac.authorization.k8s.io/aggregate-to-{r}": "true" for r in aggregate}}
        roles.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                      "metadata": {"name": f"portico-{persona}", "labels": labels},
                      "rules": [{"apiGroups": list(GATEWAY_GROUPS), "resources": resources, "verbs": [*READ, *WRITE]},
                                {"apiGroups": list(GATEWAY_GROUPS), "resources": [f"{r}/status" for r in resources],
                                 "verbs": READ}]})
    everything = sorted({p for kind in KINDS if kind.group in GATEWAY_GROUPS for p in [kind.plural]})
    roles.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                  "metadata": {"name": "portico-view", "labels": {
                      **LABELS, "rbac.authorization.k8s.io/aggregate-to-view": "true"}},
                  "rules": [{"apiGroups": list(GATEWAY_GROUPS), "resources": everything, "verbs": READ}]})
    return roles


class PlainDumper(yaml.SafeDumper):
    """YAML without anchors and aliases (`&id001`, `*id001`): PyYAML writes one for every
    dict or list an output shares (LABELS here), which kubectl reads but reviewers,
    kustomize patches and diff tools do not expect."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_all(docs: list[dict[str, Any]]) -> str:
    return yaml.dump_all(docs, Dumper=PlainDumper, sort_keys=False, width=120)


def render_yaml(**options: Any) -> str:
    return dump_all(render(**options))


FILES = ("crds.yaml", "namespace.yaml", "rbac.yaml", "controller.yaml", "personas.yaml")


def render_files(**options: Any) -> dict[str, str]:
    """deploy/ for `kubectl kustomize deploy` (or `kubectl apply -k deploy`): the objects of
    `render` by file, and a kustomization listing them."""
    def file_of(obj: dict[str, Any]) -> str | None:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind in ("CustomResourceDefinition", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"):
            return "crds.yaml"
        if kind == "Namespace":
            return "namespace.yaml"
        if kind in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding") and name == NAME \
                or kind == "ServiceAccount":
            return "rbac.yaml"
        if kind == "ClusterRole":
            return "personas.yaml"
        return "controller.yaml"

    groups: dict[str, list[dict[str, Any]]] = {f: [] for f in FILES}
    for obj in render(**options):
        if (file := file_of(obj)) is not None:
            groups[file].append(obj)
    out = {f: "# generated by `portico install render --output-dir deploy`; do not edit\n"
              + dump_all(docs) for f, docs in groups.items()}
    out["kustomization.yaml"] = ("# generated by `portico install render --output-dir deploy`; do not edit\n"
                                 + yaml.safe_dump({"apiVersion": "kustomize.config.k8s.io/v1beta1",
                                                   "kind": "Kustomization", "resources": list(FILES)},
                                                  sort_keys=False))
    return out
