"""auth-type: basic + auth-secret (+ auth-realm): HTTP basic authentication against the
htpasswd file in the Secret's `auth` key, served by real Envoy from the Ingress, then
converted (a SecurityPolicy basicAuth on the HTTPRoute) and served again: the same
requests get the same answers. A file with a hash Envoy cannot check (bcrypt here)
fails closed (500) rather than letting anyone in; auth-type digest, not converted, is
refused (403); a user and password the backend sees as ingress-nginx forwards them.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from support import free_port, start, stop, wait_for
from test_ingress_annotations import NGINX, Client, backend, ingress, serve

from portico.ingress import convert

pytestmark = pytest.mark.timeout(180)
BCRYPT = "$2y$05$2hGbcxr9VPCM6vKKRCbyB.4uNKSFvt71yY2WjSmpv4vqdp9ROs0Bq"  # htpasswd -bnB bob secret


def sha(password: str) -> str:
    return "{SHA}" + base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()


def secret(name: str, lines: list[str]) -> dict[str, Any]:
    """An ingress-nginx basic-auth Secret: the htpasswd file in its `auth` key."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "shop"},
            "data": {"auth": base64.b64encode("\n".join(lines).encode() + b"\n").decode()}}


def manifests(web: int) -> list[dict[str, Any]]:
    def one(name: str, annotations: dict[str, str]) -> dict[str, Any]:
        return ingress(name, {NGINX + k: v for k, v in annotations.items()}, [("/", "Prefix", "web")],
                       host=f"{name}.example.com")

    return [
        {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "portico"},
         "spec": {"controller": "portico.dev/ingress-controller"}},
        *backend("web", web),
        secret("users", [f"alice:{sha('wonderland')}", f"carol:{sha('c4rol')}"]),
        secret("legacy", [f"dave:{sha('d4ve')}", f"bob:{BCRYPT}"]),
        one("basic", {"auth-type": "basic", "auth-secret": "users", "auth-realm": "Shop staff"}),
        one("other-ns", {"auth-type": "basic", "auth-secret": "shop/users"}),
        one("legacy", {"auth-type": "basic", "auth-secret": "legacy"}),
        one("digest", {"auth-type": "digest", "auth-secret": "users"}),
        one("open", {}),
    ]


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def answers(c: Client) -> dict[str, Any]:
    out: dict[str, Any] = {}
    status, _, headers = c.http("basic.example.com", "/")
    out["no-credentials"] = (status, headers.get("www-authenticate"))
    out["wrong-password"] = c.http("basic.example.com", "/", headers=basic("alice", "nope"))[0]
    out["unknown-user"] = c.http("basic.example.com", "/", headers=basic("mallory", "wonderland"))[0]
    status, reply, _ = c.http("basic.example.com", "/x", headers=basic("alice", "wonderland"))
    out["alice"] = (status, reply.get("path"))
    out["carol"] = c.http("basic.example.com", "/", headers=basic("carol", "c4rol"))[0]
    out["namespace/name"] = [c.http("other-ns.example.com", "/", headers=h)[0] for h in ({}, basic("carol", "c4rol"))]
    out["unsupported-hash"] = [c.http("legacy.example.com", "/", headers=h)[0]
                               for h in ({}, basic("dave", "d4ve"), basic("bob", "secret"))]
    out["digest"] = c.http("digest.example.com", "/", headers=basic("alice", "wonderland"))[0]
    out["open"] = c.http("open.example.com", "/")[0]
    return out


def test_basic_auth_served_and_converted_answer_alike(tmp_path: Path) -> None:
    web_port, admin, offset = free_port(), free_port(), free_port() - 80
    echo = start(["echo", "--port", str(web_port), "--name", "web-1", "--namespace", "shop"], tmp_path / "web.log")
    docs = manifests(web_port)
    try:
        proc, ip = serve(tmp_path, "served", docs, admin, offset, "Ingress")
        client = Client(ip, 80 + offset, 443 + offset, trustme.CA())
        wait_for("the Ingresses served", lambda: client.http("basic.example.com", "/")[0] == 401, 30)
        served = answers(client)
        stop(proc)
        assert served == {
            # Envoy's realm is the URL (ingress-nginx: auth-realm, Basic realm="Shop staff")
            "no-credentials": (401, 'Basic realm="http://basic.example.com/"'),
            "wrong-password": 401, "unknown-user": 401, "alice": (200, "/x"), "carol": 200,
            "namespace/name": [401, 200],
            # bob's bcrypt hash Envoy cannot check: the whole file is refused (fail closed), never open
            "unsupported-hash": [500, 500, 500],
            "digest": 403, "open": 200,
        }
        converted = convert(docs)
        policies = {o["metadata"]["name"]: o["spec"] for o in converted.objects if o["kind"] == "SecurityPolicy"}
        assert policies["basic"]["basicAuth"] == {"users": {"name": "users"}}
        assert "{SHA}" not in yaml.safe_dump_all(converted.objects)  # the Secret is named, its data not copied
        others = [d for d in docs if d["kind"] in ("Service", "EndpointSlice", "Secret")]
        proc, ip = serve(tmp_path, "converted", converted.objects + others, admin, offset, "Gateway")
        client = Client(ip, 80 + offset, 443 + offset, trustme.CA())
        wait_for("the routes served", lambda: client.http("basic.example.com", "/")[0] == 401, 30)
        assert answers(client) == served
        stop(proc)
    finally:
        stop(echo)
