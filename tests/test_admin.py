"""The admin API over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from portico.admin import AdminServer
from portico.objects import key_of
from portico.provider import Document, DocumentError, ProviderEvent, Source
from portico.provider.apiserver import APIServerEmulation
from portico.store import Store

GATEWAY: dict[str, Any] = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "Gateway",
    "metadata": {"name": "gw", "namespace": "infra"},
    "spec": {"gatewayClassName": "portico", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]},
}
SERVICE: dict[str, Any] = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"},
                           "spec": {"ports": [{"port": 80}]}}


SECRET: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tls", "namespace": "infra"},
                          "type": "kubernetes.io/tls", "data": {"tls.crt": "Y2VydA==", "tls.key": "c2VjcmV0LWtleQ=="},
                          "stringData": {"extra": "plain-secret-value"}}


def filled_store() -> Store:
    store = Store()
    api = APIServerEmulation()
    store.apply(api.admit(ProviderEvent(
        upserts=tuple(Document(key_of(r), r, Source("m.yaml", i)) for i, r in enumerate((GATEWAY, SERVICE, SECRET))),
        errors=(DocumentError("bad.yaml", 7, "invalid YAML: mapping values are not allowed here"),),
    )))
    store.set_status(key_of(GATEWAY), {"conditions": [{"type": "Accepted", "status": "True"}]})
    return store


@contextmanager
def running(server: AdminServer) -> Iterator[str]:
    """Run the server's loop in a thread; yield its base URL."""
    import threading

    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(5)
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def get(url: str) -> tuple[int, dict[str, Any], str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read()), r.headers.get("Connection", "")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), e.headers.get("Connection", "")


def test_healthz_follows_readiness() -> None:
    server = AdminServer(Store())
    with running(server) as base:
        assert get(base + "/healthz")[0] == 503
        server.ready = True
        status, body, _ = get(base + "/healthz")
        assert (status, body) == (200, {"status": "ok"})


def test_health_names_the_problems_of_a_control_plane_that_serves_on() -> None:
    """Issue 31 item 2: e.g. a state directory it cannot write. Still 200 (changes are
    applied), but the body says so."""
    server = AdminServer(Store(), problems=lambda: ["cannot save the Gateways' addresses"])
    server.ready = True
    with running(server) as base:
        assert get(base + "/healthz")[:2] == (200, {"status": "degraded",
                                                    "problems": ["cannot save the Gateways' addresses"]})
        assert get(base + "/readyz")[1]["problems"] == ["cannot save the Gateways' addresses"]


def test_objects_in_kubernetes_shape_with_status_and_errors() -> None:
    with running(AdminServer(filled_store())) as base:
        status, body, _ = get(base + "/api/objects")
        assert status == 200
        kinds = {o["kind"]: o for o in body["items"]}
        gw = kinds["Gateway"]
        assert set(gw) >= {"apiVersion", "kind", "metadata", "spec", "status"}
        assert gw["metadata"]["generation"] == 1 and gw["metadata"]["uid"]
        assert gw["status"]["conditions"][0]["type"] == "Accepted"
        assert body["errors"] == [{"file": "bad.yaml", "line": 7, "path": "", "object": "", "rule": "",
                                   "message": "invalid YAML: mapping values are not allowed here"}]


def test_object_filters() -> None:
    with running(AdminServer(filled_store())) as base:
        def names(query: str) -> list[str]:
            return [o["metadata"]["name"] for o in get(base + "/api/objects?" + query)[1]["items"]]

        assert names("kind=Gateway") == ["gw"]
        assert names("namespace=default") == ["svc"]
        assert names("kind=Service&name=svc") == ["svc"]
        assert names("name=missing") == []


def test_errors_endpoint_and_unknown_paths() -> None:
    with running(AdminServer(filled_store())) as base:
        status, body, _ = get(base + "/api/errors")
        assert status == 200 and body["items"][0]["line"] == 7
        assert get(base + "/nope")[0] == 404


def test_bad_method_and_garbage() -> None:
    with running(AdminServer(Store())) as base:
        req = urllib.request.Request(base + "/api/objects", method="POST", data=b"{}")
        try:
            urllib.request.urlopen(req, timeout=5)
        except urllib.error.HTTPError as e:
            assert e.code == 405
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"garbage\r\n\r\n")
            assert s.recv(100).split(b" ")[1] == b"400"


def test_secret_data_is_never_returned() -> None:
    with running(AdminServer(filled_store())) as base:
        for query in ("", "?kind=Secret", "?name=tls"):
            raw = urllib.request.urlopen(base + "/api/objects" + query, timeout=5).read().decode()
            assert "c2VjcmV0LWtleQ==" not in raw and "plain-secret-value" not in raw and "Y2VydA==" not in raw
        [secret] = get(base + "/api/objects?kind=Secret")[1]["items"]
        assert secret["data"] == {"tls.crt": "<redacted>", "tls.key": "<redacted>"}
        assert secret["stringData"] == {"extra": "<redacted>"}


SPELLINGS = ("v2", "V1", "v1beta1", "v1 ", " v1", "core/v1", "apps/v1")


def test_a_secret_under_another_api_version_is_refused_and_never_shown() -> None:
    """Issue 23: a Secret spelled `v2`, `V1`, `v1beta1`, `"v1 "` or `core/v1` was applied, used
    as a certificate and listed unredacted (redaction compared apiVersion to "v1")."""
    docs = [dict(SECRET, apiVersion=v, metadata={"name": f"s{i}", "namespace": "infra"})
            for i, v in enumerate(SPELLINGS)]
    admitted = APIServerEmulation().admit(ProviderEvent(
        upserts=tuple(Document(key_of(r), r, Source("m.yaml", i)) for i, r in enumerate(docs))))
    assert admitted.upserts == ()
    assert [e.message for e in admitted.errors] == [
        f'no matches for kind "Secret" in version "{v}"' for v in SPELLINGS]
    # had one reached the store (a provider without the check), it is a Secret all the same
    store = Store()
    others = [dict(SECRET, apiVersion="example.com/v1", metadata={"name": "x", "namespace": "infra"}),
              dict(SECRET, kind="secret ", metadata={"name": "y", "namespace": "infra"})]
    for i, raw in enumerate([*docs, *others]):
        store.upsert(Document(key_of(raw), raw, Source("m.yaml", i)))
    with running(AdminServer(store)) as base:
        raw_answer = urllib.request.urlopen(base + "/api/objects", timeout=5).read().decode()
    assert len(json.loads(raw_answer)["items"]) == len(docs) + 2
    assert "c2VjcmV0LWtleQ==" not in raw_answer and "plain-secret-value" not in raw_answer


def test_foreign_host_headers_are_refused() -> None:
    """DNS rebinding: a page served from evil.example resolving to 127.0.0.1 gets nothing."""
    with running(AdminServer(filled_store())) as base:
        req = urllib.request.Request(base + "/api/objects", headers={"Host": "evil.example"})
        try:
            urllib.request.urlopen(req, timeout=5)
            raise AssertionError("served a foreign Host")
        except urllib.error.HTTPError as e:
            assert e.code == 403
        req = urllib.request.Request(base + "/healthz", headers={"Host": "localhost:1"})
        try:
            urllib.request.urlopen(req, timeout=5)
        except urllib.error.HTTPError as e:
            assert e.code == 503  # allowed (not ready yet), not 403


def test_readyz_and_openapi() -> None:
    state = {"ready": False}
    server = AdminServer(Store(), readiness=lambda: (state["ready"], {"groups": {"portico": "pending"}}))
    with running(server) as base:
        server.ready = True
        status, body, _ = get(base + "/readyz")
        assert status == 503 and body["groups"] == {"portico": "pending"}
        state["ready"] = True
        assert get(base + "/readyz")[0] == 200
        spec = get(base + "/api/openapi.json")[1]
        assert spec["openapi"].startswith("3.") and {"/healthz", "/readyz", "/api/objects", "/api/errors"} <= set(
            spec["paths"])


def test_a_token_guards_the_api_but_not_the_probes() -> None:
    server = AdminServer(filled_store(), token="s3cret")
    with running(server) as base:
        server.ready = True
        assert get(base + "/healthz")[0] == 200 and get(base + "/readyz")[0] == 200
        assert get(base + "/api/objects")[0] == 401
        for header, code in (("Bearer wrong", 401), ("Basic s3cret", 401), ("Bearer s3cret", 200)):
            req = urllib.request.Request(base + "/api/objects", headers={"Authorization": header})
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    assert (header, r.status) == (header, code)
            except urllib.error.HTTPError as e:
                assert (header, e.code) == (header, code)


def test_a_token_guards_envoys_stats_too() -> None:
    """Issue 23: /metrics/envoy (every tenant's cluster and route names) was open with a token set."""
    class Envoys:
        def envoy_stats(self, group: str) -> bytes | None:
            return b"envoy_cluster_upstream_rq{envoy_cluster_name=\"team/db\"} 1\n"

        def envoy_admin(self, group: str, path: str) -> bytes | None:
            return None

    server = AdminServer(filled_store(), token="s3cret", envoys=Envoys())
    with running(server) as base:
        for path, header, code in (("/metrics/envoy?group=portico", "", 401),
                                   ("/metrics/envoy?group=portico", "Bearer wrong", 401),
                                   ("/metrics/envoy?group=portico", "Bearer s3cret", 200),
                                   ("/metrics", "", 404)):  # Portico's own counters: open (none set here)
            req = urllib.request.Request(base + path, headers={"Authorization": header} if header else {})
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    assert (path, header, r.status) == (path, header, code)
            except urllib.error.HTTPError as e:
                assert (path, header, e.code) == (path, header, code)


def test_the_token_from_a_file_and_a_warning_for_the_flag(tmp_path: Any, caplog: Any) -> None:
    """Issue 23: --admin-token is readable in /proc/PID/cmdline; --admin-token-file is not."""
    import sys

    import pytest
    import typer

    from portico.cli import admin_token_of

    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    assert admin_token_of(None, token_file) == "s3cret"
    for bad in (tmp_path / "missing", tmp_path / "empty"):
        if bad.name == "empty":
            bad.write_text("\n")
        with pytest.raises(typer.BadParameter, match="admin token file"):
            admin_token_of(None, bad)
    with pytest.raises(typer.BadParameter, match="once"):
        admin_token_of("s3cret", token_file)
    argv = sys.argv
    try:
        sys.argv = ["portico", "run", "m", "--admin-token", "s3cret"]
        with caplog.at_level("WARNING", logger="portico"):
            assert admin_token_of("s3cret", None) == "s3cret"
        assert "--admin-token is readable by every local user" in caplog.text
        caplog.clear()
        sys.argv = ["portico", "run", "m"]  # from PORTICO_ADMIN_TOKEN: no warning
        with caplog.at_level("WARNING", logger="portico"):
            assert admin_token_of("s3cret", None) == "s3cret"
        assert caplog.text == ""
    finally:
        sys.argv = argv


def test_portico_status_sends_the_token() -> None:
    from portico.cli.status import fetch

    server = AdminServer(filled_store(), token="s3cret")
    with running(server) as base:
        admin = base.removeprefix("http://")
        objects, _ = fetch(admin, token="s3cret")
        assert {o["kind"] for o in objects} == {"Gateway"}
        try:
            fetch(admin)
            raise AssertionError("no token, yet answered")
        except OSError as e:
            assert "401" in str(e) and "--admin-token" in str(e)


def test_an_admin_api_beyond_loopback_is_warned_about(caplog: Any) -> None:
    async def scenario() -> None:
        server = AdminServer(Store(), host="0.0.0.0")
        await server.start()
        await server.stop()

    with caplog.at_level("WARNING", logger="portico.admin"):
        asyncio.run(scenario())
    assert any("beyond this machine" in r.getMessage() and "PORTICO_ADMIN_TOKEN" in r.getMessage()
               for r in caplog.records)
