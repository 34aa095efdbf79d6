"""The live topology page in headless Chromium (Debian's, driven by Playwright):
it draws the Gateway API objects of a running `portico run`, a broken route in red
with its reason, describe output on click, and an edit without a reload."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (.ci/run installs it)")]
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart"
DOCS = Path(__file__).resolve().parents[1] / "docs"
BROKEN = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: broken, namespace: default}
spec:
  parentRefs: [{name: quickstart}]
  hostnames: [broken.example.com]
  rules: [{backendRefs: [{name: missing, port: 80}]}]
"""
LATE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: late, namespace: default}
spec:
  parentRefs: [{name: quickstart}]
  hostnames: [late.example.com]
  rules: [{backendRefs: [{name: echo-v1, port: 80}]}]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_topology_page_draws_colours_describes_and_follows_edits(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    manifests = tmp_path / "manifests"
    shutil.copytree(QUICKSTART, manifests)  # the quickstart topology, plus a broken route
    (manifests / "broken.yaml").write_text(BROKEN)
    admin = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "portico.cli", "run", str(manifests), "--admin-address",
                             f"127.0.0.1:{admin}", "--port-offset", str(free_port() - 80),
                             "--state-dir", str(tmp_path / "state")], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{admin}/healthz", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, "portico run did not start"
                time.sleep(0.1)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS,
                                         chromium_sandbox=False)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{admin}/topology")
            page.wait_for_function("window.portico && window.portico.cy.nodes().length >= 7", timeout=20000)
            nodes = page.evaluate("window.portico.cy.nodes().map(n => n.data())")
            by_id = {n["id"]: n for n in nodes}
            assert {"GatewayClass//portico", "Gateway/default/quickstart", "Gateway/default/quickstart/listener/http",
                    "HTTPRoute/default/split", "HTTPRoute/default/broken", "Service/default/echo-v1",
                    "Service/default/echo-v2"} <= set(by_id)
            broken = by_id["HTTPRoute/default/broken"]
            assert broken["state"] == "error" and "BackendNotFound" in broken["reason"]
            assert broken["colour"] == "#c62828" and by_id["HTTPRoute/default/split"]["state"] == "ok"
            colour = page.evaluate("window.portico.cy.getElementById('HTTPRoute/default/broken')"
                                   ".style('background-color')")
            assert colour.replace(" ", "") in ("rgb(198,40,40)", "#c62828")
            # click: describe output in the side panel
            page.evaluate("window.portico.cy.getElementById('HTTPRoute/default/broken').emit('tap')")
            page.wait_for_function("document.getElementById('details').textContent.includes('what to do')",
                                   timeout=10000)
            if "PORTICO_SCREENSHOT" in os.environ:  # docs/topology.png (README, "Debugging a route")
                page.set_viewport_size({"width": 1280, "height": 720})
                page.evaluate("window.portico.cy.fit()")
                page.screenshot(path=str(DOCS / "topology.png"))
            # an edit appears without a reload
            updates = page.evaluate("window.portico.updates")
            (manifests / "late.yaml").write_text(LATE)
            page.wait_for_function("window.portico.cy.getElementById('HTTPRoute/default/late').nonempty()",
                                   timeout=20000)
            assert page.evaluate("window.portico.updates") > updates
            assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # never reloaded
            browser.close()
    finally:
        proc.terminate()
        proc.wait(20)


PUBLIC = Path(__file__).resolve().parent / "cli" / "testdata" / "public"
SECURED = """
apiVersion: gateway.portico.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: open, namespace: apps}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: open}]
  basicAuth: {users: {name: users}}
---
apiVersion: v1
kind: Secret
metadata: {name: users, namespace: apps}
stringData: {.htpasswd: "alice:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=\\n"}
"""


def test_the_topology_page_marks_routes_a_public_gateway_exposes_without_authentication(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    manifests = tmp_path / "manifests"
    shutil.copytree(PUBLIC, manifests)
    admin = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "portico.cli", "run", str(manifests), "--admin-address",
                             f"127.0.0.1:{admin}", "--port-offset", str(free_port() - 8080),
                             "--state-dir", str(tmp_path / "state")], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{admin}/healthz", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, "portico run did not start"
                time.sleep(0.1)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, chromium_sandbox=False)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{admin}/topology")
            page.wait_for_function("window.portico && window.portico.cy.getElementById('TCPRoute/apps/db').nonempty()",
                                   timeout=20000)
            marked = set(page.evaluate("window.portico.cy.nodes('[unauthenticated]').map(n => n.id())"))
            assert marked == {"HTTPRoute/apps/open", "HTTPRoute/apps/optional", "HTTPRoute/apps/cidrs",
                              "TCPRoute/apps/db"}
            style = page.evaluate("(() => { const n = window.portico.cy.getElementById('HTTPRoute/apps/open'); "
                                  "return [n.style('border-style'), n.style('border-color'), n.data('label')]; })()")
            assert style[0] == "dashed" and style[1].replace(" ", "") in ("rgb(230,81,0)", "#e65100")
            assert style[2].startswith("⚠") and "no authentication" in style[2]
            unmarked = page.evaluate("window.portico.cy.getElementById('HTTPRoute/apps/tokens').style('border-style')")
            assert unmarked != "dashed"
            assert "4 route(s) exposed without authentication" in page.text_content("#status")
            page.evaluate("window.portico.cy.getElementById('HTTPRoute/apps/open').emit('tap')")
            page.wait_for_function("document.getElementById('details').textContent.startsWith('WARNING: rule api')",
                                   timeout=10000)
            # the route gains basic auth: unmarked without a reload
            (manifests / "secured.yaml").write_text(SECURED)
            page.wait_for_function("window.portico.cy.getElementById('HTTPRoute/apps/open')"
                                   ".data('unauthenticated') === undefined", timeout=20000)
            assert page.evaluate("window.portico.cy.getElementById('HTTPRoute/apps/open')"
                                 ".style('border-style')") != "dashed"
            assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
            browser.close()
    finally:
        proc.terminate()
        proc.wait(20)
