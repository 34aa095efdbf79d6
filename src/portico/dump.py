"""Config dumps (`portico config-dump`, admin `/api/config_dump`, through
`portico.diagnostics`): what the control plane sends, per Gateway, as the IR or as
the Envoy resources built from it.

Private keys never leave: every `key_pem` of the IR and every `privateKey` of an
Envoy Secret is replaced by "<redacted>" before anything is serialized (certificates,
which are public, stay); so are the htpasswd users, API keys and OIDC client secrets of
SecurityPolicies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from portico.contracts import GatewayOutput
from portico.ir import IR
from portico.objects import ObjectKey

REDACTED = "<redacted>"
# private keys; the users and API keys of SecurityPolicy basicAuth and apiKeyAuth (the IR's
# htpasswd and credentials, Envoy's BasicAuthPerRoute users and ApiKeyAuthPerRoute credentials),
# the client and HMAC secrets of SecurityPolicy oidc (the IR's, and Envoy's generic SDS secrets),
# and a SecurityPolicy's local JWKS (the IR's local_jwks, Envoy's JwtProvider local_jwks): it may
# come from a Secret and hold symmetric ("oct") keys, which verify and sign alike
SECRET_FIELDS = frozenset({"key_pem", "privateKey", "private_key", "htpasswd", "credentials", "users",
                           "client_secret", "hmac_secret", "genericSecret", "local_jwks", "localJwks"})


def redacted(value: Any) -> Any:
    """`value` (dicts and lists) with every private-key field replaced."""
    if isinstance(value, dict):
        return {k: REDACTED if k in SECRET_FIELDS else redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redacted(v) for v in value]
    return value


def ir_dump(outputs: Mapping[ObjectKey, GatewayOutput], gateway: str | None = None) -> dict[str, Any]:
    """"namespace/name" -> {"xds": the Gateway's IR, "infra": its infrastructure description}."""
    return {f"{k.namespace}/{k.name}": redacted({"xds": dataclasses.asdict(out.xds),
                                                 "infra": dataclasses.asdict(out.infra)})
            for k, out in sorted(outputs.items()) if gateway in (None, f"{k.namespace}/{k.name}")}


def xds_dump(groups: Mapping[str, IR], group: str | None = None) -> dict[str, Any]:
    """xDS group -> type -> name -> the Envoy resource (JSON), as the xDS server builds it."""
    from google.protobuf.json_format import MessageToDict

    from portico.xds.resources import build

    out: dict[str, Any] = {}
    for name, model in sorted(groups.items()):
        if group not in (None, name):
            continue
        by_type = build(model).by_type()
        out[name] = {t.rsplit(".", 1)[-1]: {n: redacted(MessageToDict(m)) for n, m in sorted(resources.items())}
                     for t, resources in by_type.items()}
    return out
