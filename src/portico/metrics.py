"""Prometheus metrics of the control plane, served as `/metrics` on the admin address
(prometheus_client; one registry per process so tests can run several).

    portico_translations_total{result}          translations, "ok" or "failed"
    portico_translations_patched_total          ... of them made by patching the previous one
                                                (a change of routes alone: translator.incremental)
    portico_translation_duration_seconds        how long a translation took
    portico_xds_pushes_total{group}             configurations sent to an Envoy group
    portico_xds_acks_total{group}               ... accepted by it
    portico_xds_nacks_total{group}              ... rejected by it
    portico_status_writes_total                 statuses handed to the StatusWriter
    portico_objects{kind,state}                 stored objects by kind, "valid" or "invalid"
                                                (not applied), read from the store at scrape time
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from portico.store import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.translations = Counter("portico_translations", "Translations, by result.", ["result"],
                                    registry=self.registry)
        self.patched = Counter("portico_translations_patched", "Translations made by patching the previous one.",
                               registry=self.registry)
        self.translation_seconds = Histogram(
            "portico_translation_duration_seconds", "Duration of one translation.", registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.pushes = Counter("portico_xds_pushes", "Configurations sent, by Envoy group.", ["group"],
                              registry=self.registry)
        self.acks = Counter("portico_xds_acks", "Configurations ACKed, by Envoy group.", ["group"],
                            registry=self.registry)
        self.nacks = Counter("portico_xds_nacks", "Configurations NACKed, by Envoy group.", ["group"],
                             registry=self.registry)
        self.status_writes = Counter("portico_status_writes", "Statuses handed to the status writer.",
                                     registry=self.registry)

    def watch_store(self, store: Store) -> None:
        """`portico_objects{kind,state}` from `store` at every scrape."""
        self.registry.register(_StoreCollector(lambda: store))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _StoreCollector(Collector):
    def __init__(self, store: Callable[[], Store]) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("portico_objects", "Stored objects by kind; invalid ones are not applied.",
                                   labels=["kind", "state"])
        store = self.store()
        valid = Tally(key.kind for key in store.objects())
        invalid = Tally(e.object.split(" ", 1)[0] for e in store.errors() if e.object)
        for kind in sorted(set(valid) | set(invalid)):
            family.add_metric([kind, "valid"], valid.get(kind, 0))
            family.add_metric([kind, "invalid"], invalid.get(kind, 0))
        yield family
