"""Whether a process still runs, for processes that are not our children (an adopted
Envoy, the owner a bulk worker watches): only `kill(pid, 0)` and /proc can tell."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    with contextlib.suppress(OSError):
        # a zombie has exited: it stays in the table until its parent reaps it
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True
