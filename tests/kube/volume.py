"""A Secret or ConfigMap volume laid out as the kubelet writes it (its AtomicWriter):
the files live in a timestamped directory `..<time>`, the `..data` symlink points at
it, and each key is a symlink `key -> ..data/key`. An update writes a new directory,
points a `..data_tmp` symlink at it and renames that over `..data` (one atomic move:
what Envoy's watched_directory reacts to), then removes the old directory. A key's
own symlink is never touched by an update."""

from __future__ import annotations

import base64
import itertools
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

_SERIAL = itertools.count(1)


class Volume:
    def __init__(self, path: Path, files: Mapping[str, bytes]) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.update(files)

    def update(self, files: Mapping[str, bytes]) -> None:
        data = self.path / "..data"
        old = os.readlink(data) if data.is_symlink() else None
        stamp = f"..2026_12_07_00_00_00.{next(_SERIAL)}"
        (self.path / stamp).mkdir(mode=0o755)
        for key, value in files.items():
            (self.path / stamp / key).write_bytes(value)
        tmp = self.path / "..data_tmp"
        tmp.symlink_to(stamp)
        tmp.rename(data)
        for key in files:
            link = self.path / key
            if not link.is_symlink():
                link.symlink_to(f"..data/{key}")
        if old is not None:
            shutil.rmtree(self.path / old)


def pod_volumes(config: Mapping[str, object], secret: Mapping[str, object],
                mounts: Mapping[str, Path]) -> tuple[Volume, Volume]:
    """The generated ConfigMap (bootstrap and SDS files) and Secret (xDS certificate) as a
    pod mounts them, each at the directory `mounts` gives for its mount path (every mount
    path in the ConfigMap's files is rewritten to its directory here)."""
    from portico.infra.kubernetes import BOOTSTRAP_MOUNT, XDS_MOUNT

    def local(text: str) -> str:
        for mount, path in mounts.items():
            text = text.replace(mount, str(path))
        return text

    files = config["data"]
    assert isinstance(files, dict)
    return (Volume(mounts[BOOTSTRAP_MOUNT], {k: local(v).encode() for k, v in files.items()}),
            Volume(mounts[XDS_MOUNT], secret_files(secret)))


def secret_files(secret: Mapping[str, object]) -> dict[str, bytes]:
    data = secret["data"]
    assert isinstance(data, dict)
    return {k: base64.b64decode(v) for k, v in data.items()}
