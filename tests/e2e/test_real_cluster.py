"""Against a real cluster: the CRDs install, the examples are accepted and invalid CRs are refused by the real API
server. Skipped unless MODELYARD_E2E_KUBECONFIG names a kubeconfig of a disposable cluster (it installs the CRDs)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not os.environ.get("MODELYARD_E2E_KUBECONFIG"), reason="no real cluster configured (MODELYARD_E2E_KUBECONFIG)"
    ),
]

REPO = Path(__file__).resolve().parents[2]


def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("kubectl")
    assert binary, "kubectl is not on PATH"
    env = {**os.environ, "KUBECONFIG": os.environ["MODELYARD_E2E_KUBECONFIG"]}
    return subprocess.run([binary, *args], input=stdin, capture_output=True, text=True, env=env, check=False)


def test_crds_install_and_examples_pass_server_side_validation() -> None:
    applied = kubectl("apply", "--server-side", "-f", str(REPO / "manifests" / "crds"))
    assert applied.returncode == 0, applied.stderr
    waited = kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    assert waited.returncode == 0, waited.stderr
    dry_run = kubectl("apply", "--dry-run=server", "-n", "default", "-f", str(REPO / "manifests" / "examples"))
    assert dry_run.returncode == 0, dry_run.stderr
    assert "trainingjob.modelyard.dev/flowers-resnet50" in dry_run.stdout


def test_real_api_server_refuses_an_invalid_trainingjob() -> None:
    invalid = """
apiVersion: modelyard.dev/v1alpha1
kind: TrainingJob
metadata: {name: bad-epochs}
spec:
  training: {epochs: -1}
  data: {path: /data}
  output: {modelName: bad}
"""
    result = kubectl("apply", "--dry-run=server", "-n", "default", "-f", "-", stdin=invalid)
    assert result.returncode != 0
    assert "spec.training.epochs" in result.stderr
