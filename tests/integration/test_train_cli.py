"""`modelyard data` as a user runs it: it writes the bundled digits, says where, and refuses what it cannot do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modelyard.training.errors import DatasetError
from tests.integration.train_support import trainer_env

pytestmark = pytest.mark.integration


def _data(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "modelyard.cli", "data", *arguments]
    return subprocess.run(command, env=trainer_env(), capture_output=True, text=True, timeout=300, check=False)


def test_writes_the_digits_once_and_refuses_an_unknown_dataset(tmp_path: Path) -> None:
    out = tmp_path / "digits"
    written = _data("digits", str(out), "--size", "8")
    assert written.returncode == 0, written.stderr
    assert written.stdout.strip() == (
        f"digits: 1618 training images in {out / 'train'}, 179 held-out images in {out / 'held-out'} (10 classes)"
    )
    assert len(list((out / "train" / "7").glob("*.png"))) > 150

    assert _data("digits", str(out), "--size", "8").returncode == 0  # the same dataset again: nothing to do

    unknown = _data("cifar", str(tmp_path / "other"))
    assert unknown.returncode == DatasetError.exit_code
    assert unknown.stderr.strip() == "error: unknown dataset 'cifar'; choose one of: digits, mnist"
    assert not (tmp_path / "other").exists()
