"""The conformance kit (../shared/conformance) against `portico run`, on the cases
Portico passes (passing.txt): CI fails when a passing case regresses.

The kit drives `portico run` as a black box exactly as the standalone contract
says; the features passed to it are the ones Portico claims in GatewayClass
status, so cases gated on other features are skipped as upstream does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from portico.translator.features import SUPPORTED_FEATURES

HERE = Path(__file__).parent
KIT = Path(os.environ.get("PORTICO_CONFORMANCE_KIT", HERE.parents[2] / "shared" / "conformance"))
PASSING = [line.strip() for line in (HERE / "passing.txt").read_text().splitlines()
           if line.strip() and not line.startswith("#")]


@pytest.mark.skipif(not (KIT / "run").exists(),
                    reason=f"conformance kit not found at {KIT} (set PORTICO_CONFORMANCE_KIT: README, Conformance)")
@pytest.mark.timeout(3000)
def test_conformance_kit_passing_cases(tmp_path: Path) -> None:
    portico = shutil.which("portico", path=str(Path(sys.executable).parent))
    assert portico, "the portico command is not installed in this environment"
    cmd = [sys.executable, str(KIT / "run"), "--gateway-cmd", f"{portico} run {{dir}} --admin-address {{admin}}",
           "--supported-features", *SUPPORTED_FEATURES, "--report", str(tmp_path / "report.json"),
           "--only", *PASSING]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=2900)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    failures = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    assert proc.returncode == 0, f"{summary}\n" + "\n".join(failures) + f"\n{proc.stderr[-3000:]}"
    skipped = [line for line in proc.stdout.splitlines() if line.startswith("SKIP")]
    assert not skipped, "cases listed as passing were skipped:\n" + "\n".join(skipped)
