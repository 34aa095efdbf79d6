"""Backends on Envoy's own machine (`portico.translator.localaccess`): a route author's
Backend or XBackend reaches loopback, link-local addresses and Unix sockets only where the
GatewayClass's PorticoProxy allows it (spec.localBackends); Services (the platform's) may in
standalone mode; Portico's and Envoy's control endpoints (Placement.reserved) never, however
they are spelled."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

from portico.models import parse_object
from portico.objects import ObjectKey
from portico.translator import Placement, Snapshot, translate
from portico.translator.snapshot import Reserved

GW = ("default", "gw")
PORTICO, X = "gateway.portico.dev/v1alpha1", "gateway.networking.x-k8s.io/v1alpha1"
ADMIN_PORT = 9911
ALLOW_EVERYTHING = [{"namespaces": {"from": "All"}, "cidrs": ["0.0.0.0/0", "::/0"], "unixSockets": ["/"]}]


def meta(name: str, namespace: str = "default") -> dict[str, str]:
    return {"name": name, "namespace": namespace}


def backend(name: str, endpoint: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": PORTICO, "kind": "Backend", "metadata": meta(name), "spec": {"endpoints": [endpoint]}}


def objects(extra: list[dict[str, Any]], refs: list[tuple[str, str, str]],
            local_backends: list[dict[str, Any]] | None = None) -> dict[ObjectKey, Any]:
    gc: dict[str, Any] = {"controllerName": "portico.dev/gateway-controller"}
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default", "labels": {"team": "a"}}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": meta("gw"),
         "spec": {"gatewayClassName": "portico", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}},
        *({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": meta(f"r-{n}"),
           "spec": {"parentRefs": [{"name": "gw"}], "rules": [
               {"matches": [{"path": {"type": "PathPrefix", "value": f"/{n}"}}],
                "backendRefs": [{"group": g, "kind": k, "name": n, "port": 80}]}]}} for g, k, n in refs),
        *extra,
    ]
    if local_backends is not None:
        gc["parametersRef"] = {"group": "gateway.portico.dev", "kind": "PorticoProxy", "name": "proxy",
                               "namespace": "infra"}
        docs.append({"apiVersion": PORTICO, "kind": "PorticoProxy", "metadata": meta("proxy", "infra"),
                     "spec": {"localBackends": local_backends}})
    docs.append({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                 "metadata": {"name": "portico"}, "spec": gc})
    parsed = [parse_object(d) for d in docs]
    return {o.key: o for o in parsed}


def resolve(extra: list[dict[str, Any]], refs: list[tuple[str, str, str]], placement: Placement,
            local_backends: list[dict[str, Any]] | None = None) -> tuple[set[str], list[dict[str, Any]]]:
    """(cluster names, the routes' ResolvedRefs conditions): one route per backend, so that
    each one's refusal shows (a route reports its first unresolved reference)."""
    out = translate(Snapshot(objects(extra, refs, local_backends), {GW: placement}))
    clusters = {c.name for g in out.gateways.values() for c in g.xds.clusters}
    conds = [c for k, v in out.statuses.items() if k.kind == "HTTPRoute"
             for p in v["parents"] for c in p["conditions"] if c["type"] == "ResolvedRefs"]
    return clusters, conds


def refused(conds: list[dict[str, Any]], words: str) -> bool:
    return any(c["status"] == "False" and c["reason"] == "RefNotPermitted" and words in c["message"] for c in conds)


B = ("gateway.portico.dev", "Backend")


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A state directory as standalone mode lays it out: the xDS socket, an Envoy's admin socket."""
    d = tmp_path / "state"
    (d / "envoy" / "portico-0").mkdir(parents=True)
    (d / "xds.sock").touch()
    (d / "envoy" / "portico-0" / "admin.sock").touch()
    return d


def standalone(state: Path) -> Placement:
    return Placement("127.10.0.1", reserved=Reserved((str(state),), (("127.0.0.1", ADMIN_PORT),)))


LOCAL = {
    "lo": {"ip": {"address": "127.0.0.1", "port": 9001}},
    "lo6": {"ip": {"address": "::1", "port": 9001}},
    "mapped": {"ip": {"address": "::ffff:127.0.0.1", "port": 9001}},
    "metadata": {"ip": {"address": "169.254.169.254", "port": 80}},
    "linklocal6": {"ip": {"address": "fe80::1", "port": 80}},
    "any": {"ip": {"address": "0.0.0.0", "port": 9001}},
    "name": {"fqdn": {"hostname": "LocalHost.", "port": 9001}},
    "numeric": {"fqdn": {"hostname": "2130706433", "port": 9001}},
    "sock": {"unix": {"path": "/run/app/http.sock"}},
}


def test_local_backends_are_refused_unless_the_class_allows_them(state: Path) -> None:
    far = backend("far", {"ip": {"address": "10.0.0.7", "port": 80}})
    extra = [backend(n, e) for n, e in LOCAL.items()] + [far]
    refs = [(*B, n) for n in LOCAL] + [(*B, "far")]
    clusters, conds = resolve(extra, refs, standalone(state))
    assert clusters == {"backend/default/far"}  # the other routes keep working
    for name in LOCAL:
        assert refused(conds, f"Backend default/{name}: endpoint"), name
    assert refused(conds, "do not allow for namespace default (PorticoProxy spec.localBackends)")

    allow = [{"namespaces": {"from": "Selector", "selector": {"matchLabels": {"team": "a"}}},
              "cidrs": ["127.0.0.0/8", "::1/128", "169.254.0.0/16", "fe80::/10", "0.0.0.0/32"],
              "unixSockets": ["/run/app/"]}]
    clusters, conds = resolve(extra, refs, standalone(state), allow)
    assert clusters == {f"backend/default/{n}" for n in LOCAL} | {"backend/default/far"}
    assert all(c["status"] == "True" for c in conds)

    other_team = [dict(allow[0], namespaces={"from": "Selector", "selector": {"matchLabels": {"team": "b"}}})]
    assert resolve(extra, refs, standalone(state), other_team)[0] == {"backend/default/far"}
    narrower = [dict(allow[0], cidrs=["127.0.0.1/32"], unixSockets=["/run/app/other.sock"])]
    assert resolve(extra, refs, standalone(state), narrower)[0] == {"backend/default/far", "backend/default/lo",
                                                                      "backend/default/mapped",
                                                                      "backend/default/numeric"}


def test_services_may_name_loopback_their_external_name_in_standalone_mode_only(state: Path) -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": meta("echo"),
           "spec": {"ports": [{"port": 80, "name": "http"}]}}
    eps = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {**meta("echo-1"), "labels": {"kubernetes.io/service-name": "echo"}},
           "addressType": "IPv4", "ports": [{"name": "http", "port": 9001, "protocol": "TCP"}],
           "endpoints": [{"addresses": ["127.20.0.5"]}]}
    clusters, conds = resolve([svc, eps], [("", "Service", "echo")], standalone(state))
    assert clusters == {"default/echo/80"} and all(c["status"] == "True" for c in conds)
    ext = {"apiVersion": "v1", "kind": "Service", "metadata": meta("ext"),
           "spec": {"type": "ExternalName", "externalName": "localhost", "ports": [{"port": 80}]}}
    clusters, conds = resolve([ext], [("", "Service", "ext")], standalone(state))
    assert clusters == {"default/ext/80"}
    # Kubernetes: the API server keeps loopback out of EndpointSlices; an externalName is
    # anybody's to write and the pod's loopback is Envoy's
    kubernetes = dataclasses.replace(standalone(state), local_backends=False)
    clusters, conds = resolve([svc, eps, ext], [("", "Service", "echo"), ("", "Service", "ext")], kubernetes)
    assert clusters == {"default/echo/80"}
    assert refused(conds, "Service default/ext: endpoint localhost:80 is a local backend")


SOCKET_SPELLINGS = ["{s}/xds.sock", "{s}/envoy/portico-0/admin.sock", "{s}/envoy/../xds.sock", "{s}//xds.sock",
                    "{s}/./envoy/portico-0/admin.sock", "{link}/xds.sock", "{link}/envoy/portico-0/admin.sock",
                    "{s}/not-yet-there.sock", "{s}", "{s}/"]


def test_the_state_directory_is_refused_however_spelled_and_whatever_is_allowed(state: Path, tmp_path: Path) -> None:
    link = tmp_path / "innocent"
    os.symlink(state, link)
    (tmp_path / "app").mkdir()
    os.symlink(state / "xds.sock", tmp_path / "app" / "app.sock")  # a socket in an allowed directory
    paths = [p.format(s=state, link=link) for p in SOCKET_SPELLINGS] + [str(tmp_path / "app" / "app.sock")]
    extra = [backend(f"s{i}", {"unix": {"path": p}}) for i, p in enumerate(paths)]
    refs = [(*B, f"s{i}") for i in range(len(paths))]
    for allowed in (None, ALLOW_EVERYTHING, [{"namespaces": {"from": "All"}, "unixSockets": [f"{tmp_path}/app/"]}]):
        clusters, conds = resolve(extra, refs, standalone(state), allowed)
        assert clusters == set(), allowed
        for i, p in enumerate(paths):
            assert refused(conds, f"Backend default/s{i}: endpoint unix:{p} is Portico's state directory"), p


def test_process_relative_and_malformed_paths_are_refused(state: Path) -> None:
    paths = ["/proc/self/cwd/xds.sock", "/proc/1/root/run/app.sock", "/dev/fd/3", "/run/app/\0x", "relative.sock"]
    extra = [backend(f"p{i}", {"unix": {"path": p}}) for i, p in enumerate(paths)]
    clusters, conds = resolve(extra, [(*B, f"p{i}") for i in range(len(paths))], standalone(state), ALLOW_EVERYTHING)
    assert clusters == set() and len(conds) == len(paths)
    assert all(c["reason"] == "RefNotPermitted" for c in conds)
    assert sum("relative to the process" in c["message"] for c in conds) == 3
    assert sum("not an absolute path" in c["message"] for c in conds) == 2


ADMIN_SPELLINGS = [("ip", "127.0.0.1"), ("ip", "127.0.0.2"), ("ip", "127.255.255.254"), ("ip", "0.0.0.0"),
                   ("ip", "::1"), ("ip", "::"), ("ip", "::ffff:127.0.0.1"), ("ip", "::ffff:7f00:2"),
                   ("ip", "::127.0.0.1"), ("fqdn", "localhost"), ("fqdn", "LOCALHOST."), ("fqdn", "admin.localhost"),
                   ("fqdn", "localhost.localdomain"), ("fqdn", "127.1"), ("fqdn", "2130706433"), ("fqdn", "0x7f.1"),
                   ("fqdn", "127.0.0.1")]


def test_the_admin_port_is_refused_on_every_spelling_of_this_machine(state: Path) -> None:
    extra = [backend(f"a{i}", {kind: ({"address": a} if kind == "ip" else {"hostname": a}) | {"port": ADMIN_PORT}})
             for i, (kind, a) in enumerate(ADMIN_SPELLINGS)]
    extra.append({"apiVersion": X, "kind": "XBackend", "metadata": meta("x"),
                  "spec": {"type": "ExternalHostname", "externalHostname": {"hostname": "localhost"},
                           "port": {"port": ADMIN_PORT}}})
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": meta("ext"),
           "spec": {"type": "ExternalName", "externalName": "localhost", "ports": [{"port": ADMIN_PORT}]}}
    refs = [(*B, f"a{i}") for i in range(len(ADMIN_SPELLINGS))] + [("gateway.networking.x-k8s.io", "XBackend", "x")]
    for allowed in (None, ALLOW_EVERYTHING):
        clusters, conds = resolve([*extra, svc], refs, standalone(state), allowed)
        assert clusters == set(), allowed
        for i, (_, a) in enumerate(ADMIN_SPELLINGS):
            assert refused(conds, f"Backend default/a{i}: endpoint {a}:{ADMIN_PORT} is a control port"), a
        assert refused(conds, f"XBackend default/x: endpoint localhost:{ADMIN_PORT} is a control port")
    # a Service's endpoints (the platform's) are held to the same: the ExternalName, an EndpointSlice
    eps = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {**meta("lo-1"), "labels": {"kubernetes.io/service-name": "lo"}},
           "addressType": "IPv4", "ports": [{"name": "", "port": ADMIN_PORT, "protocol": "TCP"}],
           "endpoints": [{"addresses": ["127.0.0.1"]}]}
    lo = {"apiVersion": "v1", "kind": "Service", "metadata": meta("lo"), "spec": {"ports": [{"port": 80}]}}
    clusters, conds = resolve([svc, lo, eps], [("", "Service", "lo")], standalone(state), ALLOW_EVERYTHING)
    assert clusters == set() and refused(conds, f"Service default/lo: endpoint 127.0.0.1:{ADMIN_PORT} is a control")
    svc["spec"]["ports"] = [{"port": 80}]  # type: ignore[index]
    clusters, _ = resolve([svc], [("", "Service", "ext")], standalone(state))
    assert clusters == {"default/ext/80"}  # another port of localhost: the platform's to name


def test_an_admin_api_on_every_address_reserves_its_port_everywhere(state: Path) -> None:
    wide = Placement("127.10.0.1", reserved=Reserved((str(state),), (("0.0.0.0", ADMIN_PORT),)))
    extra = [backend("lan", {"ip": {"address": "192.168.1.5", "port": ADMIN_PORT}}),
             backend("other", {"ip": {"address": "192.168.1.5", "port": 8080}})]
    clusters, conds = resolve(extra, [(*B, "lan"), (*B, "other")], wide)
    assert clusters == {"backend/default/other"} and refused(conds, "listens on every address")


def test_kubernetes_mode_refuses_envoys_admin_even_when_local_backends_are_allowed() -> None:
    from portico.infra.kubernetes import ADMIN_SOCKET, POD_RESERVED, READY_PORT

    pod = Placement("0.0.0.0", ("10.0.0.1",), bind_address_reachable=False, local_backends=False,
                    reserved=POD_RESERVED)
    extra = [backend("admin", {"unix": {"path": ADMIN_SOCKET}}),
             backend("ready", {"ip": {"address": "127.0.0.1", "port": READY_PORT}}),
             backend("sidecar", {"ip": {"address": "127.0.0.1", "port": 8080}})]
    refs = [(*B, "admin"), (*B, "ready"), (*B, "sidecar")]
    assert resolve(extra, refs, pod)[0] == set()
    clusters, conds = resolve(extra, refs, pod, ALLOW_EVERYTHING)
    assert clusters == {"backend/default/sidecar"}
    assert refused(conds, "is Portico's state directory") and refused(conds, "is a control port")


METADATA = {
    "aws": {"ip": {"address": "169.254.169.254", "port": 80}},
    "ecs": {"ip": {"address": "169.254.170.2", "port": 80}},
    "aws6": {"ip": {"address": "fd00:ec2::254", "port": 80}},
    "alibaba": {"ip": {"address": "100.100.100.200", "port": 80}},
    "gce": {"fqdn": {"hostname": "metadata.google.internal", "port": 80}},
    "gce-dot": {"fqdn": {"hostname": "Metadata.Google.Internal.", "port": 80}},
}


def pod(link_local: bool = False) -> Placement:
    """A Kubernetes-mode placement (`infra.kubernetes`): Envoy in its own pod."""
    return Placement("0.0.0.0", ("203.0.113.9",), bind_address_reachable=False, local_backends=False,
                     reserved=Reserved(("/var/run/portico-admin",), (("127.0.0.1", 19001),)),
                     link_local_backends=link_local)


def test_cloud_metadata_endpoints_are_refused_in_kubernetes_mode_unless_the_controller_allows_them() -> None:
    """Instance metadata services hold the node's cloud credentials: AWS (IPv4, ECS, IPv6),
    Alibaba Cloud and GCE's name are refused (`localaccess`, `guardrails`), and the route
    says why and how to allow them; the controller's --allow-link-local-backends allows
    them to every Backend (not loopback, not Unix sockets)."""
    far = backend("far", {"ip": {"address": "10.0.0.7", "port": 80}})
    extra = [backend(n, e) for n, e in METADATA.items()] + [far, backend("lo", LOCAL["lo"])]
    refs = [(*B, n) for n in METADATA] + [(*B, "far"), (*B, "lo")]
    clusters, conds = resolve(extra, refs, pod())
    assert clusters == {"backend/default/far"}
    for name in METADATA:
        assert refused(conds, f"Backend default/{name}"), name
    assert refused(conds, "the controller's --allow-link-local-backends")
    clusters, conds = resolve(extra, refs, pod(link_local=True))
    assert clusters == {f"backend/default/{n}" for n in METADATA} | {"backend/default/far"}
    assert refused(conds, "Backend default/lo: endpoint 127.0.0.1:9001 is a local backend")
