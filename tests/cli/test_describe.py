"""`portico describe KIND/NAME`: conditions in words, attachments, missing references,
and what to do; offline on manifests and from a running instance's admin API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from portico.describe import ADVICE, describe
from portico.standalone import offline

MANIFESTS = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: portico}
spec: {controllerName: portico.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: portico
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: good, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: lost, namespace: apps}
spec:
  parentRefs: [{name: gw, namespace: default}]
  rules: [{backendRefs: [{name: missing, port: 80}]}]
"""
ME = "portico.dev/gateway-controller"


def test_a_gateway_lists_attached_and_refused_routes(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(MANIFESTS)
    objects = offline([str(tmp_path)]).objects()
    gw = next(o for o in objects if o["kind"] == "Gateway")
    text = "\n".join(describe(gw, objects, ME))
    assert "ok Programmed=True" in text  # offline: as once Envoy accepted it
    assert "listener http: 1 attached routes" in text
    assert "routes attached: HTTPRoute default/good" in text
    assert "HTTPRoute apps/lost: NotAllowedByListeners" in text


def test_a_broken_route_says_why_and_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(MANIFESTS)
    out = subprocess.run([sys.executable, "-m", "portico.cli", "describe", "httproute/lost", "-n", "apps",
                          "-f", str(tmp_path)], capture_output=True, text=True, check=True).stdout
    assert "NO Accepted=False (NotAllowedByListeners)" in out
    assert ADVICE["NotAllowedByListeners"] in out and ADVICE["BackendNotFound"] in out
    assert "backend Service apps/missing:80 weight 1: MISSING" in out
    missing = subprocess.run([sys.executable, "-m", "portico.cli", "describe", "httproute/nope", "-f",
                              str(tmp_path)], capture_output=True, text=True)
    assert missing.returncode == 1 and "no HTTPRoute named 'nope'" in missing.stderr


def test_not_found_says_what_there_is() -> None:
    """Issue 31 item 10: `describe foo/bar` said only "no foo bar"."""
    from portico.describe import not_found

    objects = [{"kind": "HTTPRoute", "metadata": {"name": "web", "namespace": "default"}},
               {"kind": "Gateway", "metadata": {"name": "gw", "namespace": "default"}}]
    assert not_found(objects, "foo", "bar", None) == (
        "no object of kind 'foo' (kinds here: Gateway, HTTPRoute; KIND/NAME, e.g. httproute/web)")
    assert not_found(objects, "httproute", "shop", None) == "no HTTPRoute named 'shop' (HTTPRoutes here: default/web)"
    assert "another namespace? -n NAMESPACE" in not_found(objects, "httproute", "web", "prod")
