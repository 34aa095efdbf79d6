"""SecurityPolicy fields added for issue 29 that make a policy Invalid (its status says
why; its routes are not changed): extAuth's shape and principal.clientCertificate names."""

from __future__ import annotations

from typing import Any

import pytest

from portico.models import SecurityPolicy
from portico.translator.policies.security import SecurityPolicies


def policy(**spec: Any) -> SecurityPolicy:
    return SecurityPolicy.model_validate({
        "apiVersion": "gateway.portico.dev/v1alpha1", "kind": "SecurityPolicy",
        "metadata": {"name": "p", "namespace": "shop"},
        "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "r"}], **spec}})


HTTP = {"backendRefs": [{"name": "authz", "port": 80}]}


@pytest.mark.parametrize(("spec", "why"), [
    ({"extAuth": {"http": HTTP}}, ""),
    ({"extAuth": {"grpc": HTTP, "failOpen": True}}, ""),
    ({"extAuth": {}}, "set one of grpc and http"),
    ({"extAuth": {"grpc": HTTP, "http": HTTP}}, "set one of grpc and http"),
    ({"extAuth": {"http": {"backendRefs": []}}}, "name the one Service or Backend"),
    ({"extAuth": {"grpc": HTTP, "headersToExtAuth": ["x-token"]}}, "not supported with grpc"),
    ({"extAuth": {"http": {**HTTP, "path": "no-slash"}}}, "is not a valid path"),
    ({"extAuth": {"http": HTTP, "bodyToExtAuth": {"maxRequestBytes": 0}}}, "at least 1"),
    ({"authorization": {"rules": [{"action": "Allow", "principal": {"clientCertificate": {}}}]}}, ""),
    ({"authorization": {"rules": [{"action": "Allow", "principal": {"clientCertificate": {"names": [
        {"type": "RegularExpression", "value": "spiffe://[a-z]+/.*"}]}}}]}}, ""),
    ({"authorization": {"rules": [{"action": "Allow", "principal": {"clientCertificate": {"names": [
        {"type": "Glob", "value": "x"}]}}}]}}, "type 'Glob'"),
    ({"authorization": {"rules": [{"action": "Allow", "principal": {"clientCertificate": {"names": [
        {"type": "RegularExpression", "value": "(unclosed"}]}}}]}}, "invalid RE2"),
])
def test_problems(spec: dict[str, Any], why: str) -> None:
    found = SecurityPolicies.problem(policy(**spec))
    assert (why in found and bool(found)) if why else found == ""
