"""Debian tools the traffic benchmark needs (nginx, HAProxy, wrk): installed when missing.

Run as root (as CI and fresh machines do). Packages are installed with apt-get;
no system service is started by the benchmarks (they run each server in the
foreground with their own configuration on loopback ports).
"""

from __future__ import annotations

import os
import shutil
import subprocess

PACKAGES = {"nginx": "nginx-light", "haproxy": "haproxy", "wrk": "wrk"}
SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


def which(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in SBIN:
        path = os.path.join(d, name)
        if os.access(path, os.X_OK):
            return path
    return None


def ensure(names: tuple[str, ...] = tuple(PACKAGES)) -> dict[str, str]:
    """The path of each tool, installing the missing ones with apt-get (root only)."""
    missing = [n for n in names if which(n) is None]
    if missing:
        if os.geteuid() != 0:
            raise RuntimeError(f"missing {', '.join(missing)}: apt-get install -y "
                               + " ".join(PACKAGES[n] for n in missing))
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        print(f"installing {', '.join(PACKAGES[n] for n in missing)} (apt-get)", flush=True)
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, timeout=600, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends",
                        *(PACKAGES[n] for n in missing)], check=True, env=env, timeout=900, stdout=subprocess.DEVNULL)
    paths = {n: which(n) for n in names}
    absent = [n for n, p in paths.items() if p is None]
    if absent:
        raise RuntimeError(f"still missing after apt-get: {', '.join(absent)}")
    return {n: p for n, p in paths.items() if p is not None}


def version(tool: str, path: str) -> str:
    args = {"nginx": [path, "-v"], "haproxy": [path, "-v"], "wrk": [path, "-v"]}[tool]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    text = (proc.stdout + proc.stderr).strip().splitlines()
    return text[0] if text else ""
