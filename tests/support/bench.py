"""Running a benchmark script of bench/ as a newcomer does, from the repository root in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_bench(script: str, *arguments: str) -> str:
    """`python bench/<script> <arguments>`; its standard output, or an assertion error with the end of its output."""
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "NO_ALBUMENTATIONS_UPDATE": "1"}
    command = [sys.executable, f"bench/{script}", *arguments]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout
