"""Where the team's shared material lives, for the tools that read it (the Gateway API
reference and the conformance kit)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    """The team's shared directory (`../shared` of the repository; a git worktree may sit
    deeper): $PORTICO_SHARED, else the nearest ancestor's `shared/`."""
    env = os.environ.get("PORTICO_SHARED")
    if env:
        return Path(env)
    for parent in ROOT.parents:
        if (parent / "shared" / "reference").is_dir():
            return parent / "shared"
    return ROOT.parent / "shared"
