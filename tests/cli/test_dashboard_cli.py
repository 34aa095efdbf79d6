"""`portico dashboard`: standalone, the admin API's topology URL; Kubernetes, `kubectl
port-forward` to the controller's Deployment with the admin token (read from its Secret
in the strict double) in the URL's fragment, the page and its data reachable through the
forward. No cluster runs here, so `kubectl` is a stand-in on PATH that forwards a real
local port to a real admin API and prints what kubectl prints."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import urllib.parse
from pathlib import Path

import aiohttp
import pytest
import yaml
from kube.support import kubeconfig, running

from portico.admin import AdminServer
from portico.store import Store

pytestmark = pytest.mark.timeout(60)
PORTICO = [sys.executable, "-m", "portico.cli"]

KUBECTL = '''#!{python}
"""kubectl port-forward as far as portico dashboard uses it: forwards 127.0.0.1:<any> to $FORWARD_TO."""
import asyncio, os, sys
open(os.environ["KUBECTL_ARGS"], "w").write(" ".join(sys.argv[1:]))
host, port = os.environ["FORWARD_TO"].rsplit(":", 1)

async def pipe(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()

async def handle(reader, writer):
    up_reader, up_writer = await asyncio.open_connection(host, int(port))
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    local = server.sockets[0].getsockname()[1]
    print(f"Forwarding from 127.0.0.1:{{local}} -> 9912", flush=True)
    await server.serve_forever()

asyncio.run(main())
'''


def test_standalone_prints_the_admin_apis_page() -> None:
    out = subprocess.run([*PORTICO, "dashboard", "--no-browser", "--admin-address", "127.0.0.1:9911"],
                         capture_output=True, text=True, check=True, env={**os.environ, "PORTICO_ADMIN_TOKEN": "t k"})
    assert out.stdout.strip() == "http://127.0.0.1:9911/topology#token=t+k"


def test_kubernetes_forwards_to_the_controller_with_its_token(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(KUBECTL.format(python=sys.executable))
    (bin_dir / "kubectl").chmod(0o755)

    async def main() -> None:
        admin = AdminServer(Store(), "127.0.0.1", 0, token="from-the-secret")
        admin.ready = True
        await admin.start()
        async with running() as (api, _):
            api.install("", "v1", "Secret", "secrets")
            api.put({"apiVersion": "v1", "kind": "Secret", "metadata": {
                "name": "portico-admin-token", "namespace": "portico-system"},
                "data": {"token": base64.b64encode(b"from-the-secret").decode()}})
            config = tmp_path / "kubeconfig"
            user = kubeconfig(api.base_url, api.token("operator"))
            config.write_text(yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
                "clusters": [{"name": "emulator", "cluster": {"server": api.base_url}}],
                "users": [{"name": "tester", "user": {"token": user.users["tester"].token}}],
                "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester"}}]}))
            env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FORWARD_TO": f"127.0.0.1:{admin.port}",
                   "KUBECTL_ARGS": str(tmp_path / "args")}
            env.pop("PORTICO_ADMIN_TOKEN", None)
            proc = await asyncio.create_subprocess_exec(
                *PORTICO, "dashboard", "--kubernetes", "--no-browser", "--kubeconfig", str(config),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True,
                # Ctrl-C as from a terminal: a test run started in the background of a
                # non-interactive shell has SIGINT ignored, which its children inherit
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
            try:
                assert proc.stdout is not None
                line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
                url = urllib.parse.urlsplit(line)
                assert url.path == "/topology" and url.fragment == "token=from-the-secret", line
                args = (tmp_path / "args").read_text()
                assert args == (f"--kubeconfig {config} -n portico-system port-forward "
                                "deployment/portico-controller 0:9912 --address 127.0.0.1")
                async with aiohttp.ClientSession() as http:
                    async with http.get(f"http://{url.netloc}/topology") as page:
                        assert page.status == 200 and "topology" in (await page.text()).lower()
                    headers = {"Authorization": "Bearer from-the-secret"}
                    async with http.get(f"http://{url.netloc}/api/topology", headers=headers) as data:
                        assert data.status == 200
            finally:
                os.killpg(proc.pid, signal.SIGINT)
                await asyncio.wait_for(proc.wait(), 15)
        await admin.stop()

    asyncio.run(main())
