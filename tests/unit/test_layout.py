"""The folder operator/ is modelyard.operator, never the stdlib's `operator`."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("flags", [[], ["-S"]], ids=["with-site", "without-site"])
def test_import_operator_from_repo_root_is_the_stdlib(flags: list[str]) -> None:
    # Without site, nothing imports `operator` before us: this is the case a stray operator/__init__.py would break.
    code = "import operator, sys; print(operator.__file__); print(operator.itemgetter(1)([0, 7]))"
    result = subprocess.run([sys.executable, *flags, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    path, value = result.stdout.split()
    assert Path(path).parent == Path(sysconfig.get_paths()["stdlib"])
    assert value == "7"


def test_operator_folder_is_not_a_top_level_package() -> None:
    assert not (REPO / "operator" / "__init__.py").exists()


def test_every_source_folder_is_packaged() -> None:
    # package-dir maps folders by hand, so a new sub-package must be listed too or wheels (the images) lose it.
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packaged = set(config["packages"])
    for module, folder in config["package-dir"].items():
        for source in (REPO / folder).rglob("*.py"):
            relative = source.parent.relative_to(REPO / folder)
            if "__pycache__" in relative.parts:
                continue
            expected = ".".join([module, *relative.parts])
            assert expected in packaged, f"{source.relative_to(REPO)}: add {expected} to [tool.setuptools] packages"
