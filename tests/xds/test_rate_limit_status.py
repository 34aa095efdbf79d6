"""RateLimitPolicy local.responseStatusCode: the status of Envoy's local_ratelimit (429 by
default; ingress-nginx's limit-req-status-code 503 for converted Ingresses); a code Envoy's
HttpStatus does not name keeps 429 rather than a configuration Envoy would refuse."""

from __future__ import annotations

from portico import ir
from portico.xds.policies import local_rate_limit


def test_the_rate_limit_status_is_the_policys() -> None:
    assert not local_rate_limit((ir.RateLimit(1, 1, 1),)).HasField("status")  # Envoy's 429
    assert local_rate_limit((ir.RateLimit(1, 1, 1, status=503),)).status.code == 503
    assert not local_rate_limit((ir.RateLimit(1, 1, 1, status=499),)).HasField("status")
