"""The run path must not import torch: torch is the golden reference only (imported lazily by simulator.golden).

Checked in a fresh interpreter, since this test process itself imports torch through conftest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_run_path_does_not_import_torch() -> None:
    code = ("import sys; import simulator, simulator.cli, simulator.runner, simulator.pipeline, simulator.golden; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", f"torch imported on the run path: {out.stdout.strip()}"
