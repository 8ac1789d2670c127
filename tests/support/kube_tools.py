"""The real helm, kubectl and checkov for the chart and manifest tests, and rendering the chart with them.

They come from `scripts/install-kube-tools.sh` (into .bin/), or from PATH. A missing tool fails the test with the
command that installs it: a silently skipped chart test would hide a broken chart.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "modelyard"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "modelyard"
NAMESPACE = "modelyard-system"


def tool(name: str) -> str:
    """Path of a tool: .bin/ first (the pinned versions), then this interpreter's scripts (kubernetes-validate), then
    PATH."""
    for candidate in (REPO_ROOT / ".bin" / name, Path(sys.executable).parent / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `bash scripts/install-kube-tools.sh`")
    return found


def run(command: Sequence[str], *, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a tool; on failure (when `check`) the test fails with its output."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT, check=False)
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def helm_template_args(
    values_files: Sequence[Path] = (), settings: Sequence[str] = (), *, extra: Sequence[str] = ()
) -> list[str]:
    """`helm template` of the chart as release `modelyard` in `modelyard-system`."""
    command = [tool("helm"), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *extra]
    for path in values_files:
        command += ["--values", str(path)]
    for setting in settings:
        command += ["--set", setting]
    return command


def render(
    values_files: Sequence[Path] = (), settings: Sequence[str] = (), *, extra: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """The chart's objects as helm renders them (hooks included, CRDs with `--include-crds` in `extra`)."""
    text = run(helm_template_args(values_files, settings, extra=extra)).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(objects: Sequence[dict[str, Any]], kind: str, name_suffix: str = "") -> list[dict[str, Any]]:
    """Objects of a kind whose name ends with `name_suffix`."""
    return [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)]


def one(objects: Sequence[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    """The single object of a kind (and name suffix); fails the test otherwise."""
    found = find(objects, kind, name_suffix)
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, found {[o['metadata']['name'] for o in found]}"
    return found[0]
