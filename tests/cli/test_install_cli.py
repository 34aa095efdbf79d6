"""`portico install check` and `portico install uninstall` as a user runs them: the CLI
in its own process, against the strict API server double through a kubeconfig file."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kube.emulator import KubeAPI
from kube.test_lifecycle import apply, cluster

from portico import install

pytestmark = pytest.mark.timeout(120)


def kubeconfig_file(api: KubeAPI, path: Path, token: str) -> str:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "double",
        "clusters": [{"name": "double", "cluster": {"server": api.base_url}}],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "double", "context": {"cluster": "double", "user": "admin"}}]}))
    return str(path)


async def portico(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "portico.cli", *args,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return int(proc.returncode or 0), out.decode(), err.decode()


def test_check_then_uninstall(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster() as (api, admin):
            config = kubeconfig_file(api, tmp_path / "kubeconfig", api.token("admin-cli"))
            code, out, err = await portico("install", "check", "--kubeconfig", config)
            assert code == 0, err
            assert [line.split()[:2] for line in out.splitlines()] == [
                ["ok", "api"], ["ok", "crds"], ["ok", "channel"], ["ok", "others"], ["ok", "rbac"]]
            await apply(admin, install.render())
            code, out, err = await portico("install", "uninstall", "--kubeconfig", config)
            assert code == 0, err
            assert "deleted Deployment portico-system/portico-controller" in out
            assert "kept the CRDs" in out
            assert not [k for k in api.store if k[0] not in ("apiextensions.k8s.io", "admissionregistration.k8s.io")]
            denied = kubeconfig_file(api, tmp_path / "denied", "not-a-token")
            code, out, err = await portico("install", "check", "--kubeconfig", denied)
            assert code == 1 and out.startswith("FAIL  api") and "401" in out, (out, err)

    asyncio.run(main())
