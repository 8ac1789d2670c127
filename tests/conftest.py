"""Shared fixtures: a Kubernetes API emulator per test (`k8s_api`) and real operator processes against it."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import httpx
import kubernetes
import pytest
import yaml

from tests.support.emulator import Emulator, RunningEmulator, api_client, serve_in_thread
from tests.support.operator_process import OperatorProcess
from tests.support.operator_process import run_operator as _run_operator

REPO = Path(__file__).resolve().parents[1]
CRD_DIR = REPO / "manifests" / "crds"


@dataclass
class KubernetesApi:
    """An emulated API server: its URL, a kubeconfig file, a configured client, and the emulator for assertions."""

    url: str
    kubeconfig: Path
    client: kubernetes.client.ApiClient
    running: RunningEmulator

    @property
    def emulator(self) -> Emulator:
        return self.running.emulator

    def http(self) -> httpx.Client:
        """A plain HTTP client on the emulator, for requests the kubernetes client cannot make (content types)."""
        return httpx.Client(base_url=self.url, timeout=10)


def install_crds(api_client: kubernetes.client.ApiClient, directory: Path = CRD_DIR) -> list[str]:
    """Create every CRD in `directory` through the API, as `kubectl apply -f manifests/crds/` would."""
    extensions = kubernetes.client.ApiextensionsV1Api(api_client)
    names = []
    for path in sorted(directory.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                extensions.create_custom_resource_definition(document)
                names.append(document["metadata"]["name"])
    return names


@pytest.fixture(scope="module")
def module_workdir(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], Path]]:
    """`module_workdir(name)`: a new folder for a module's shared fixtures (a training run, a service's home), removed
    when the module ends unless a test failed meanwhile — what `tmp_path_retention_policy = "failed"` does for
    `tmp_path`, so that a module's checkpoints do not hold disk for the rest of the session."""
    made: list[Path] = []
    failed_before = request.session.testsfailed

    def make(name: str) -> Path:
        made.append(tmp_path_factory.mktemp(name))
        return made[-1]

    yield make
    if request.session.testsfailed == failed_before:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def k8s_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubernetesApi]:
    """An emulator on a free port of 127.0.0.1 with the repo's CRDs installed; KUBECONFIG and the kubernetes
    client's defaults point at it for the test. The test fails if the emulator itself raised (a 500)."""
    with serve_in_thread(tmp_path / "kubeconfig.yaml") as running:
        # The client reads $KUBECONFIG once, at import: patch the location it remembered as well.
        monkeypatch.setenv("KUBECONFIG", str(running.kubeconfig))
        monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(running.kubeconfig))
        client = api_client(running.kubeconfig)
        previous_default = kubernetes.client.Configuration.get_default_copy()
        kubernetes.client.Configuration.set_default(client.configuration)
        try:
            install_crds(client)
            yield KubernetesApi(running.url, running.kubeconfig, client, running)
        finally:
            kubernetes.client.Configuration.set_default(previous_default)
            client.close()  # type: ignore[no-untyped-call]
        internal = list(running.emulator.internal_errors)
    assert not internal, f"the emulator failed internally: {internal!r}"


RunOperator = Callable[..., AbstractContextManager[OperatorProcess]]


@pytest.fixture
def run_operator(k8s_api: KubernetesApi, tmp_path: Path) -> RunOperator:
    """`with run_operator(["kopf", "run", "--standalone", "-n", "default", path], watching=["trainingjobs"]) as op:`
    starts a real process against `k8s_api`, waits until its watches are open, and stops it (SIGTERM, then kill)
    on exit; `op.logs` has its output. `kopf` means this interpreter's kopf; any other command runs as given."""
    counter = iter(range(1_000_000))

    def start(
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        watching: Sequence[str] = (),
        startup_timeout: float = 60,
    ) -> AbstractContextManager[OperatorProcess]:
        log_path = tmp_path / f"operator-{next(counter)}.log"
        return _run_operator(
            k8s_api.running, args, log_path, env=env, watching=watching, startup_timeout=startup_timeout
        )

    return start
