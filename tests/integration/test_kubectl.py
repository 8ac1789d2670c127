"""The real kubectl against the emulator (issue 2, gap 7 and "Done when"): apply, get with printer columns,
-o yaml, delete, and the imperative creates that send protobuf."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import kubernetes
import pytest
import yaml

from tests.conftest import REPO, KubernetesApi
from tests.support.clients import CustomObjects, minimal_training_job
from tests.support.kube_tools import tool

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _installed() -> list[str]:
    """Every distinct kubectl here: CI's pinned one in .bin/ and the system's, which may be older (1.32)."""
    candidates = [REPO / ".bin" / "kubectl", shutil.which("kubectl")]
    return sorted({os.path.realpath(path) for path in candidates if path and Path(path).is_file()})


def _label(path: str | None) -> str:
    if path is None:
        return "missing"
    return str(Path(path).relative_to(REPO)) if Path(path).is_relative_to(REPO) else path


@pytest.fixture(params=_installed() or [None], ids=lambda path: _label(path))
def kubectl_binary(request: pytest.FixtureRequest) -> str:
    return request.param or tool("kubectl")  # tool() fails the test, saying how to install it


def kubectl(
    api: KubernetesApi, *args: str, check: bool = True, binary: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(api.kubeconfig), "HOME": str(api.kubeconfig.parent)}
    result = subprocess.run(
        [binary or tool("kubectl"), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if check:
        assert result.returncode == 0, f"kubectl {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def _example_names(kind: str) -> list[str]:
    names = []
    for path in sorted((REPO / "manifests" / "examples").glob("*.yaml")):
        names += [
            doc["metadata"]["name"] for doc in yaml.safe_load_all(path.read_text()) if doc and doc["kind"] == kind
        ]
    return sorted(names)


def test_apply_crds_and_examples_then_get_shows_the_printer_columns(
    k8s_api: KubernetesApi, kubectl_binary: str
) -> None:
    applied = kubectl(
        k8s_api,
        "apply",
        "--validate=false",
        "-f",
        "manifests/crds/",
        "-f",
        "manifests/examples/",
        binary=kubectl_binary,
    )
    assert "trainingjob.modelyard.dev/" in applied.stdout
    assert "modeldeployment.modelyard.dev/" in applied.stdout
    jobs = CustomObjects(k8s_api.client, "trainingjobs")
    assert sorted(job["metadata"]["name"] for job in jobs.list("default")) == _example_names("TrainingJob")

    first = _example_names("TrainingJob")[0]
    jobs.patch_status("default", first, {"status": {"phase": "Running", "progress": {"epoch": 2, "totalEpochs": 8}}})
    listing = kubectl(k8s_api, "get", "tj,md", binary=kubectl_binary).stdout
    header = listing.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "EPOCH", "OF", "PROGRESS", "VAL-ACC", "RESTARTS", "MODEL", "AGE"]
    row = next(line.split() for line in listing.splitlines() if line.startswith(f"trainingjob.modelyard.dev/{first} "))
    assert row[1:4] == ["Running", "2", "8"]
    md_header = next(line for line in listing.splitlines()[1:] if line.startswith("NAME"))
    assert md_header.split()[:3] == ["NAME", "PHASE", "READY"]
    assert all(f"modeldeployment.modelyard.dev/{name}" in listing for name in _example_names("ModelDeployment"))

    again = kubectl(k8s_api, "apply", "--validate=false", "-f", "manifests/examples/", binary=kubectl_binary)
    assert "unchanged" in again.stdout


def test_apply_on_a_fresh_cluster_creates_the_crds_first(k8s_api: KubernetesApi) -> None:
    extensions = kubernetes.client.ApiextensionsV1Api(k8s_api.client)
    for crd in extensions.list_custom_resource_definition().items:
        extensions.delete_custom_resource_definition(crd.metadata.name)
    created = kubectl(k8s_api, "apply", "--validate=false", "-f", "manifests/crds/")
    assert created.stdout.count("created") == 2
    kubectl(k8s_api, "apply", "--validate=false", "-f", "manifests/examples/")
    assert kubectl(k8s_api, "get", "tj", "-o", "name").stdout.split() == [
        f"trainingjob.modelyard.dev/{name}" for name in _example_names("TrainingJob")
    ]


def test_get_yaml_and_delete(k8s_api: KubernetesApi) -> None:
    kubectl(k8s_api, "apply", "--validate=false", "-f", "manifests/examples/trainingjob-single-gpu.yaml")
    name = yaml.safe_load((REPO / "manifests/examples/trainingjob-single-gpu.yaml").read_text())["metadata"]["name"]
    shown = yaml.safe_load(kubectl(k8s_api, "get", "tj", name, "-o", "yaml").stdout)
    assert shown["kind"] == "TrainingJob"
    assert (
        shown["metadata"]["uid"]
        == CustomObjects(k8s_api.client, "trainingjobs").get("default", name)["metadata"]["uid"]
    )
    assert shown["spec"]["training"]["batchSize"] > 0  # filled by the schema's defaults when not in the file
    kubectl(k8s_api, "delete", "tj", name)
    assert "No resources found" in kubectl(k8s_api, "get", "tj").stderr


def test_invalid_resource_is_refused_naming_the_field(k8s_api: KubernetesApi, tmp_path: Path) -> None:
    bad = yaml.safe_load((REPO / "manifests/examples/trainingjob-single-gpu.yaml").read_text())
    bad["spec"].setdefault("training", {})["epochs"] = -1
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    refused = kubectl(k8s_api, "apply", "--validate=false", "-f", str(tmp_path / "bad.yaml"), check=False)
    assert refused.returncode == 1
    assert "spec.training.epochs: Invalid value: -1" in refused.stderr


def test_imperative_creates_sent_as_protobuf(k8s_api: KubernetesApi, kubectl_binary: str) -> None:
    kubectl(k8s_api, "create", "namespace", "team-a", binary=kubectl_binary)
    kubectl(
        k8s_api, "create", "configmap", "settings", "-n", "team-a", "--from-literal=epochs=3", binary=kubectl_binary
    )
    kubectl(
        k8s_api,
        "create",
        "secret",
        "generic",
        "token",
        "-n",
        "team-a",
        "--from-literal=key=s3cret",
        binary=kubectl_binary,
    )
    core = kubernetes.client.CoreV1Api(k8s_api.client)
    assert core.read_namespace("team-a").status.phase == "Active"
    assert core.read_namespaced_config_map("settings", "team-a").data == {"epochs": "3"}
    assert core.read_namespaced_secret("token", "team-a").data == {"key": "czNjcmV0"}
    kubectl(k8s_api, "delete", "namespace", "team-a", binary=kubectl_binary)
    assert "team-a" not in kubectl(k8s_api, "get", "ns", "-o", "name", binary=kubectl_binary).stdout


def test_get_watch_prints_rows_as_objects_change(k8s_api: KubernetesApi) -> None:
    env = {**os.environ, "KUBECONFIG": str(k8s_api.kubeconfig), "HOME": str(k8s_api.kubeconfig.parent)}
    watcher = subprocess.Popen(
        [tool("kubectl"), "get", "tj", "--watch-only"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []

    def read_rows() -> None:
        assert watcher.stdout is not None
        for line in watcher.stdout:
            lines.append(line)

    reader = threading.Thread(target=read_rows, daemon=True)
    reader.start()
    try:
        jobs = CustomObjects(k8s_api.client, "trainingjobs")
        deadline = time.monotonic() + 20
        while not k8s_api.emulator.open_watches["trainingjobs"] and time.monotonic() < deadline:
            time.sleep(0.05)
        jobs.create("default", minimal_training_job("watched"))
        jobs.patch_status("default", "watched", {"status": {"phase": "Running"}})
        # Rows are read as kubectl prints them, until the patched phase shows: a fixed sleep flakes on a busy machine.
        deadline = time.monotonic() + 30
        while not any(line.split()[:2] == ["watched", "Running"] for line in lines) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        watcher.terminate()
        watcher.wait(10)
        reader.join(10)
    assert watcher.stdout is not None
    assert watcher.stderr is not None
    with watcher.stdout, watcher.stderr:
        errors = watcher.stderr.read()
    rows = [line.split() for line in lines if line.startswith("watched")]
    assert rows, errors
    assert [row[:2] for row in rows][-1] == ["watched", "Running"], "".join(lines) + errors
