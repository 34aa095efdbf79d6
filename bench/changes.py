"""2. Route changes under traffic: clients keep sending while one live route is
changed `changes` times (weights, paths, backends, filters).

Client threads send GET /live/<n> on keep-alive connections to the route's
hostname. Every variant of the route keeps serving that path, so every request
must answer 200: any other status or a connection error is a failed request.
Each variant also sets a response header `x-bench-variant`; the next change is
made once clients have seen the current one (plus `settle_s`). The baseline is
the request rate of the same clients during a quiet period of the same length
before the changes.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import threading
import time
from typing import Any

from bench import manifests as m
from bench.common import (
    BenchError,
    Client,
    Echo,
    Portico,
    Report,
    ratio,
    running,
    wait_until,
    workdir,
    write_docs,
)

HOST = "live.default.bench"
BACKENDS = ("svc-a", "svc-b", "svc-c")


def variant(k: int) -> dict[str, Any]:
    """The k-th version of the live route: cycles through weight, path, backend and filter changes."""
    kind = k % 4
    backends: list[tuple[str, int]] = [("svc-a", 1)]
    paths = ["/live"]
    filters: list[dict[str, Any]] = []
    if kind == 0:  # weights
        w = (k * 37) % 100
        backends = [("svc-a", w), ("svc-b", 100 - w)]
    elif kind == 1:  # paths: another match, or a narrower prefix still covering /live/<n>
        paths = ["/live", f"/other{k}"] if k % 8 == 1 else ["/live/"]
    elif kind == 2:  # backends
        backends = [(BACKENDS[(k // 4) % 3], 1), (BACKENDS[(k // 4 + 1) % 3], 1)]
    else:  # filters: request and response headers, then a path rewrite
        filters.append({"type": "RequestHeaderModifier",
                        "requestHeaderModifier": {"set": [{"name": "x-bench-request", "value": str(k)}]}})
        if k % 8 == 7:
            filters.append({"type": "URLRewrite", "urlRewrite": {
                "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/rewritten"}}})
    filters.append({"type": "ResponseHeaderModifier",
                    "responseHeaderModifier": {"set": [{"name": "x-bench-variant", "value": str(k)}]}})
    route = m.http_route("live", "default", HOST, backends, paths[0], filters)
    route["spec"]["rules"][0]["matches"] = [{"path": {"type": "PathPrefix", "value": p}} for p in paths]
    return route


class Sender(threading.Thread):
    def __init__(self, address: str, port: int, index: int, deadline: float) -> None:
        super().__init__(daemon=True)
        self.client = Client(address, port)
        self.index = index
        self.deadline = deadline
        self.sent = 0
        self.failures: list[dict[str, Any]] = []
        self.variant = -1
        self.stop = threading.Event()
        self.counting = threading.Event()  # counts requests for the rate while set
        self.counted = 0

    def run(self) -> None:
        n = 0
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            n += 1
            try:
                status, headers, _ = self.client.get(f"/live/{self.index}-{n}", HOST)
                if status != 200:
                    self.failures.append({"status": status, "variant": self.variant, "t": time.time()})
                else:
                    self.variant = int(headers.get("x-bench-variant", "-1"))
            except (OSError, http.client.HTTPException, ValueError) as e:
                self.failures.append({"error": repr(e), "variant": self.variant, "t": time.time()})
            self.sent += 1
            if self.counting.is_set():
                self.counted += 1
        self.client.close()


def _seen(senders: list[Sender], k: int) -> bool:
    """Every client has seen variant k (or one of them stopped: the wait ends, its failures tell)."""
    return all(s.variant >= k for s in senders) or any(not s.is_alive() for s in senders)


def run(changes: int, clients: int, settle_s: float, quiet_s: float) -> Report:
    report = Report("changes", f"2. Route changes under traffic ({changes} changes, {clients} clients)",
                    ["phase", "seconds", "requests", "requests/s", "rate / quiet", "failed"])
    with workdir("changes") as root:
        echoes = [Echo(root, name) for name in BACKENDS]
        manifests_dir = root / "manifests"
        write_docs(manifests_dir / "00-gateway.yaml", m.gateway_docs())
        write_docs(manifests_dir / "10-backends.yaml",
                   [d for e in echoes for d in m.service_docs(e.name, "default", e.port)])
        write_docs(manifests_dir / "20-live.yaml", [variant(0)])
        portico = Portico(root, manifests_dir)
        with running(*echoes, portico):
            portico.wait_ready()
            portico.wait_programmed(1)
            probe = Client(portico.address, portico.listener_port)
            wait_until("the live route", lambda: probe.get("/live/x", HOST)[1].get("x-bench-variant") == "0", 30)
            budget = quiet_s + changes * (settle_s + 10) + 30
            senders = [Sender(portico.address, portico.listener_port, i, time.monotonic() + budget)
                       for i in range(clients)]
            for s in senders:
                s.start()
            try:
                time.sleep(0.5)  # connections open
                for s in senders:
                    s.counting.set()
                time.sleep(quiet_s)
                for s in senders:
                    s.counting.clear()
                quiet = sum(s.counted for s in senders)
                quiet_failed = sum(len(s.failures) for s in senders)
                for s in senders:
                    s.counted = 0
                    s.counting.set()
                started = time.monotonic()
                seen_ms: list[float] = []
                for k in range(1, changes + 1):
                    t0 = time.monotonic()
                    write_docs(manifests_dir / "20-live.yaml", [variant(k)])
                    wait_until(f"variant {k} served", functools.partial(_seen, senders, k), 30, 0.005)
                    seen_ms.append((time.monotonic() - t0) * 1e3)
                    time.sleep(settle_s)
                changing_s = time.monotonic() - started
                for s in senders:
                    s.counting.clear()
                during = sum(s.counted for s in senders)
            finally:
                for s in senders:
                    s.stop.set()
                for s in senders:
                    s.join(15)
            probe.close()
            if any(s.is_alive() for s in senders):
                raise BenchError("a client did not stop")
    sent = sum(s.sent for s in senders)
    failures = [f for s in senders for f in s.failures]
    quiet_rate, during_rate = quiet / quiet_s, during / changing_s
    report.rows = [
        ["quiet (baseline)", quiet_s, quiet, quiet_rate, 1.0, quiet_failed],
        [f"{changes} changes", changing_s, during, during_rate, ratio(during_rate, quiet_rate),
         len(failures) - quiet_failed],
        ["total", "", sent, "", "", len(failures)],
    ]
    report.data = {"requests_sent": sent, "failures": failures, "quiet_rate": quiet_rate,
                   "during_rate": during_rate, "change_visible_ms": seen_ms, "clients": clients,
                   "variants": [variant(k)["spec"] for k in range(changes + 1)]}
    report.target("failed requests during route changes", "0", len(failures), not failures)
    report.summary = (f"{sent:,} requests, {len(failures)} failed; {changes} changes, each visible to every "
                      f"client within {max(seen_ms):.0f} ms; rate during changes {ratio(during_rate, quiet_rate):.2f}x "
                      "quiet")
    return report


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(prog="python -m bench changes", description=__doc__)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--settle", type=float, default=0.5, help="seconds between a change seen and the next")
    parser.add_argument("--quiet", type=float, default=5, help="seconds of baseline traffic")
    parser.add_argument("--quick", action="store_true", help="8 changes, 2 s of baseline")
    args = parser.parse_args(argv)
    report = run(8 if args.quick else args.changes, args.clients, args.settle, 2 if args.quick else args.quiet)
    report.emit()
    return report


if __name__ == "__main__":
    main()
