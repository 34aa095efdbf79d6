"""The ``cel`` package without its command-line REPL, until something uses it.

``common-expression-language`` (0.10) imports its REPL, ``cel.cli``, from the package's
``__init__``: prompt_toolkit, pygments and rich, about 300 modules and 11-17 MiB of
resident memory in every process that validates (the control plane and each bulk
worker), for a tool Portico never runs. Importing this module first registers
``cel.cli`` as a module that is executed on its first attribute lookup (PEP 562's module
``__getattr__``), so ``from . import cli`` in ``cel/__init__.py`` binds it without
running it. Anything that does use ``cel.cli`` gets the real module. When ``cel`` was
imported already, or its layout is not the one expected, nothing is done.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from typing import Any


def defer_cel_repl() -> None:
    if "cel" in sys.modules or "cel.cli" in sys.modules:
        return
    package = importlib.util.find_spec("cel")  # (a top-level name: finding it runs nothing)
    if package is None or not package.submodule_search_locations:
        return
    spec = importlib.machinery.PathFinder.find_spec("cel.cli", list(package.submodule_search_locations))
    if spec is None or spec.loader is None:
        return
    loader = spec.loader
    module = importlib.util.module_from_spec(spec)

    def load_on_first_use(name: str) -> Any:
        del module.__dict__["__getattr__"]
        loader.exec_module(module)
        return getattr(module, name)

    module.__dict__["__getattr__"] = load_on_first_use
    sys.modules["cel.cli"] = module


defer_cel_repl()
