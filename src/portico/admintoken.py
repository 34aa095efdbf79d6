"""The admin API's bearer token in Kubernetes mode: one token every controller replica
shares, kept in the Secret `portico-admin-token` of the controller's namespace.

`portico install render` writes no token (re-rendering must give identical output,
and applying it again must not rotate a Secret under running pods): the first
replica to start without one creates the Secret with a random token; the others,
and every later start, read it (an upgrade from a release whose render wrote the
Secret adopts that token). Operators read it with
`kubectl -n portico-system get secret portico-admin-token -o jsonpath='{.data.token}' | base64 -d`.
"""

from __future__ import annotations

import base64
import logging
import secrets

import httpx2 as httpx  # lightkube's HTTP client
from lightkube import AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Secret

from portico.kubeapi import status_code

log = logging.getLogger(__name__)

SECRET = "portico-admin-token"
KEY = "token"
LABELS = {"app.kubernetes.io/name": "portico", "app.kubernetes.io/component": "controller"}


async def load_or_create(client: AsyncClient, namespace: str, name: str = SECRET) -> str:
    """The shared token: read from its Secret, or created there by the first replica
    (a 409 means another replica won: its token is read)."""
    for _ in range(3):
        try:
            secret = await client.get(Secret, name, namespace=namespace)
            value = (secret.data or {}).get(KEY)
            if value:
                return base64.b64decode(value).decode().strip()
            raise RuntimeError(f"Secret {namespace}/{name} has no {KEY!r} key")
        except httpx.HTTPStatusError as e:
            if status_code(e) != 404:
                raise
        token = secrets.token_urlsafe(32)
        secret = Secret(metadata=ObjectMeta(name=name, namespace=namespace, labels=LABELS), type="Opaque",
                        data={KEY: base64.b64encode(token.encode()).decode()})
        try:
            await client.create(secret)
            log.info("created the admin API token in Secret %s/%s", namespace, name)
            return token
        except httpx.HTTPStatusError as e:
            if status_code(e) != 409:
                raise
    raise RuntimeError(f"could not read or create the admin token Secret {namespace}/{name}")


async def read(client: AsyncClient, namespace: str, name: str = SECRET) -> str | None:
    """The token, for a client of the admin API (`portico dashboard`); None when there is
    none or the user may not read it."""
    try:
        secret = await client.get(Secret, name, namespace=namespace)
    except httpx.HTTPStatusError as e:
        if status_code(e) in (403, 404):
            return None
        raise
    value = (secret.data or {}).get(KEY)
    return base64.b64decode(value).decode().strip() if value else None
