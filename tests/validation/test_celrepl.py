"""`cel`'s command-line REPL is not loaded by validation, and still works when used."""

from __future__ import annotations

import subprocess
import sys


def run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()


def test_validation_does_not_load_cels_repl() -> None:
    out = run("import sys, portico.validation.celext as c; c.cel.evaluate('1 + 2');"
              "print(sorted(m for m in ('prompt_toolkit', 'pygments', 'rich') if m in sys.modules))")
    assert out == "[]"


def test_cels_repl_loads_on_first_use() -> None:
    out = run("import sys, portico.validation, cel.cli; print(callable(cel.cli.app), 'prompt_toolkit' in sys.modules)")
    assert out == "True True"
