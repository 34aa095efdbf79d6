"""KubernetesProvider against the API server double: list, watch, 410, missing
CRDs, forbidden kinds, an API server that goes away."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from kube.support import CLASS, GATEWAY, obj, running
from portico.objects import ObjectKey
from portico.provider import ProviderEvent
from portico.provider.kubernetes import KINDS, KubernetesProvider

G = "gateway.networking.k8s.io"


async def next_event(events: AsyncIterator[ProviderEvent], timeout: float = 5.0) -> ProviderEvent:
    return await asyncio.wait_for(anext(events), timeout)


def names(event: ProviderEvent) -> set[str]:
    return {str(d.key) for d in event.upserts}


def test_initial_load_watch_and_relist_after_410() -> None:
    async def main() -> None:
        async with running() as (api, client):
            api.put(CLASS)
            api.put(obj("v1", "Secret", "password", "apps", data={"password": "eA=="}))
            api.put(obj("v1", "Secret", "cert", "apps", data={"tls.crt": "eA==", "tls.key": "eA=="}))
            api.put(obj("v1", "ConfigMap", "big", "apps", data={"blob": "x" * 1000}))
            api.put(obj("v1", "ConfigMap", "ca", "apps", data={"ca.crt": "PEM"}))
            events = KubernetesProvider(client, KINDS, batch_window=0.01).events()
            first = await next_event(events)
            # only Secrets a Gateway or policy could reference are kept; ConfigMaps' data only with a CA
            assert first.initial and names(first) == {"GatewayClass portico", "Secret apps/cert",
                                                      "ConfigMap apps/big", "ConfigMap apps/ca"}
            data = {d.key.name: d.raw.get("data") for d in first.upserts if d.key.kind == "ConfigMap"}
            assert data == {"big": None, "ca": {"ca.crt": "PEM"}}
            api.put(GATEWAY)
            assert names(await next_event(events)) == {"Gateway apps/gw"}
            # the watch history is gone: the informers list again and see the deletion
            api.compact()
            await api.drop_watches()
            api.remove(G, "gateways", "apps", "gw")
            event = await next_event(events)
            assert event.deletes == (ObjectKey(G, "Gateway", "apps", "gw"),) and not event.upserts
            await events.aclose()

    asyncio.run(main())


def test_a_dropped_watch_resumes_without_listing_again() -> None:
    async def main() -> None:
        async with running(bookmark_interval=0.05) as (api, client):
            events = KubernetesProvider(client, KINDS, batch_window=0.01).events()
            await next_event(events)
            lists = sum(1 for r in api.seen if r.method == "GET" and "watch" not in r.params)
            await asyncio.sleep(0.2)  # bookmarks move the informers' resourceVersion on
            await api.drop_watches()
            api.put(GATEWAY)
            assert names(await next_event(events)) == {"Gateway apps/gw"}
            watches = [r for r in api.seen if r.params.get("watch") == "true" and "gateways" in str(r.url)]
            assert watches[-1].params["allowWatchBookmarks"] == "true" and watches[-1].params["resourceVersion"]
            assert sum(1 for r in api.seen if r.method == "GET" and "watch" not in r.params) == lists
            await events.aclose()

    asyncio.run(main())


def test_missing_crds_are_picked_up_and_forbidden_kinds_do_not_stop_the_others(
        caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        kinds = [k for k in KINDS if k.kind != "TLSRoute"]
        async with running(kinds) as (api, client):
            api.forbid("", "configmaps")
            provider = KubernetesProvider(client, KINDS, retry_missing=0.1, batch_window=0.01)
            events = provider.events()
            assert (await next_event(events)).initial
            assert {k.kind for k in provider.unavailable} == {"TLSRoute", "ConfigMap"}
            api.put(GATEWAY)  # the other kinds keep working
            assert names(await next_event(events)) == {"Gateway apps/gw"}
            api.install(G, "v1", "TLSRoute", "tlsroutes")
            api.put(obj(f"{G}/v1", "TLSRoute", "tls", "apps", spec={"rules": []}))
            assert names(await next_event(events)) == {"TLSRoute apps/tls"}
            await asyncio.sleep(0.3)
            assert {k.kind for k in provider.unavailable} == {"ConfigMap"}
            await events.aclose()

    with caplog.at_level(logging.INFO, "portico.provider.kubernetes"):
        asyncio.run(main())
    forbidden = [r for r in caplog.records if "ConfigMap" in r.message and "forbidden" in r.message]
    assert len(forbidden) == 1 and forbidden[0].levelno == logging.ERROR  # clear, and once
    assert sum("TLSRoute" in r.message and "not installed" in r.message for r in caplog.records) == 1


def test_an_api_server_that_goes_away_and_comes_back() -> None:
    async def main() -> None:
        async with running() as (api, client):
            events = KubernetesProvider(client, KINDS, backoff=(0.05, 0.2), batch_window=0.01).events()
            await next_event(events)
            api.down = True
            await api.drop_watches()
            await asyncio.sleep(0.3)
            api.put(GATEWAY)  # changed while the controller could not see it
            api.down = False
            assert names(await next_event(events)) == {"Gateway apps/gw"}
            await events.aclose()

    asyncio.run(main())


def test_secrets_are_selected_by_type_lists_paginated_and_managed_fields_dropped() -> None:
    async def main() -> None:
        async with running() as (api, client):
            for i in range(12):
                api.put(obj("v1", "Secret", f"cert-{i}", "apps", type="kubernetes.io/tls",
                            data={"tls.crt": "eA==", "tls.key": "eA=="}))
            api.put(obj("v1", "Secret", "sh.helm.release.v1.web.v1", "apps", type="helm.sh/release.v1",
                        data={"release": "eA==" * 1000}))
            api.put(obj("v1", "Secret", "sa-token", "apps", type="kubernetes.io/service-account-token",
                        data={"token": "eA=="}))
            events = KubernetesProvider(client, KINDS, batch_window=0.01, page_size=5).events()
            first = await next_event(events)
            secrets = [d for d in first.upserts if d.key.kind == "Secret"]
            assert len(secrets) == 12 and all("managedFields" not in d.raw["metadata"] for d in secrets)
            lists = [e for e in api.audit if e.resource == "secrets" and e.verb == "list"]
            assert len(lists) == 3  # 12 Secrets in pages of 5
            sent = [r for r in api.seen if "/secrets" in str(r.url)]
            assert all(r.params.get("fieldSelector") == "type!=helm.sh/release.v1,"
                                                         "type!=kubernetes.io/service-account-token" for r in sent)
            await events.aclose()

    asyncio.run(main())
