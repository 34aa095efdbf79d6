"""The controller's informers' memory with 10,000 Secrets unrelated to any Gateway in
the cluster: `python tests/kube/measure_informer_memory.py` (from the repository root).

The strict double (this process) holds 10,000 Secrets as a cluster has them: Helm
releases (10 KiB of data each), service-account tokens and Opaque Secrets, every
one with managedFields, plus 20 TLS Secrets a Gateway could use. A child process runs
the KubernetesProvider (every kind, as `portico controller` does) until its initial
load, and reports its peak RSS before the first LIST and after the initial load.
A measurement, printed, never asserted.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def secrets() -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    blob = base64.b64encode(os.urandom(7680)).decode()  # 10 KiB
    for i in range(10_000):
        kind = ("helm.sh/release.v1", "kubernetes.io/service-account-token", "Opaque")[i % 3]
        data = {"release": blob} if kind.startswith("helm") else {"token": blob[:1400], "ca.crt": blob[:1400]} \
            if kind.endswith("token") else {"password": blob[:800]}
        out.append({"apiVersion": "v1", "kind": "Secret", "type": kind, "data": data,
                    "metadata": {"name": f"s{i}", "namespace": f"team-{i % 50}", "labels": {"owner": "helm"}}})
    for i in range(20):
        out.append({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                    "data": {"tls.crt": blob[:1600], "tls.key": blob[:1600]},
                    "metadata": {"name": f"cert-{i}", "namespace": "apps"}})
    return out


async def parent() -> None:
    sys.path.insert(0, str(HERE.parent))
    from kube.support import CONTROLLER, running

    async with running() as (api, _):
        for s in secrets():
            api.put(s)
        token = api.token("measure", CONTROLLER)
        proc = await asyncio.create_subprocess_exec(sys.executable, __file__, "child", api.base_url, token,
                                                    stdout=subprocess.PIPE)
        out, _ = await proc.communicate()
    result = json.loads(out)
    print(f"peak RSS before the first LIST: {result['before'] / 1024:.1f} MiB; after the initial load: "
          f"{result['after'] / 1024:.1f} MiB (+{(result['after'] - result['before']) / 1024:.1f} MiB); "
          f"Secrets kept: {result['secrets']}")


def peak_rss() -> int:
    """This process's peak RSS in KiB (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


async def child(url: str, token: str) -> None:
    sys.path.insert(0, str(HERE.parent))
    from lightkube import AsyncClient

    from kube.support import kubeconfig
    from portico.provider.kubernetes import KINDS, KubernetesProvider

    client = AsyncClient(config=kubeconfig(url, token))
    before = peak_rss()
    events = KubernetesProvider(client, KINDS).events()
    first = await anext(events)
    after = peak_rss()
    print(json.dumps({"before": before, "after": after,
                      "secrets": sum(d.key.kind == "Secret" for d in first.upserts)}))
    await events.aclose()
    await client.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        asyncio.run(child(sys.argv[2], sys.argv[3]))
    else:
        asyncio.run(parent())
