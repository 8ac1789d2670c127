"""`docker/build-bento.sh` builds the Bento from the repository with no network, and the built Bento serves."""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import httpx
import pytest
import yaml

from modelyard import __version__
from modelyard.bento.process import ServiceProcess
from tests.integration.bento_support import labelled_images, service_home, trained_model

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pathspec.*"),
]

REPO = Path(__file__).resolve().parents[2]
BENTO = f"modelyard-serving:{__version__}"


def without_network() -> list[str]:
    """A prefix that runs a command in a network namespace of its own (no interface but loopback), if allowed."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True, check=False).returncode == 0:
        return [unshare, "-n"]
    return []


def test_the_bento_builds_offline_and_serves(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    model = trained_model(tmp_path_factory.getbasetemp())
    home = service_home(tmp_path / "home", model)
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    isolation = without_network()
    build = subprocess.run(
        [*isolation, "bash", str(REPO / "docker" / "build-bento.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert f'Successfully built Bento(tag="{BENTO}")' in build.stdout
    bento = home / "bentos" / "modelyard-serving" / __version__
    manifest = yaml.safe_load((bento / "bento.yaml").read_text())
    assert manifest["service"] == "modelyard.bento.service:ImageClassifier"
    assert manifest["models"] == []  # pods read the model from the store volume
    assert [route["route"] for route in manifest["schema"]["routes"]] == ["/predict", "/predict_base64"]
    assert not (bento / "env" / "python" / "requirements.lock.txt").exists()
    wheel = bento / "env" / "python" / "wheels" / f"modelyard-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {"modelyard/bento/service.py", "modelyard/training/export.py", "modelyard/cli.py"} <= names
    assert not any(name.startswith("operator/") for name in names)  # never a top-level `operator` package

    # The built Bento, served by its tag, answers like the service itself.
    env_vars = {"BENTOML_HOME": str(home), "MODELYARD_MODEL_TAG": model.tag, "MODELYARD_DEVICE": "cpu"}
    with ServiceProcess(env_vars, target=BENTO, log=home.parent / "service.log") as service:
        service.wait_ready(180)
        [(image, _)] = labelled_images(model.held_out, 1)[:1]
        response = httpx.post(f"{service.url}/predict", files={"images": (image.name, image.read_bytes())}, timeout=60)
        assert response.status_code == 200, response.text
        assert response.json()[0]["model_tag"] == model.tag
    if not isolation:
        pytest.xfail("built and served, but no network namespace here to prove the build needed no network")
