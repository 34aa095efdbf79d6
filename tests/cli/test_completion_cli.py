"""Shell completion (typer's): `portico --show-completion SHELL` prints the script that
`--install-completion` installs, and the completion it calls answers commands and
subcommands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PORTICO = str(Path(sys.executable).parent / "portico")  # the entry point: completion is keyed to its name


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_completion_script_is_printed(shell: str) -> None:
    out = subprocess.run([PORTICO, "--show-completion", shell], capture_output=True, text=True, check=True).stdout
    assert "_PORTICO_COMPLETE" in out


@pytest.mark.parametrize(("words", "cword", "expected"), [
    ("portico inst", 1, "install"), ("portico install un", 2, "uninstall"), ("portico config-dump --inf", 2, "--infra"),
])
def test_commands_complete(words: str, cword: int, expected: str) -> None:
    env = {**os.environ, "_PORTICO_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    out = subprocess.run([PORTICO], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == [expected]
