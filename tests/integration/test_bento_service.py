"""The Bento service as a real `bentoml serve` process on 127.0.0.1, with a model trained by the real trainer:
honest readiness, predictions equal to the in-process model's, metrics that count what was asked."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch

from modelyard.bento.process import ServiceProcess
from modelyard.bento.runtime import Classifier, WarmupSample, warm_up
from modelyard.bento.settings import DEFAULT_TOP_K
from modelyard.training.export import load_from_store
from tests.integration.bento_support import (
    Reference,
    TrainedModel,
    add_to_store,
    answers,
    labelled_images,
    rgb,
    scrape,
    service_home,
    total,
    trained_model,
)
from tests.support.waiting import eventually

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    # bentoml's import reaches pathspec's deprecated pattern class; not ours to fix.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pathspec.*"),
]

START_TIMEOUT = 180


@dataclass
class LateStart:
    """A service started before its model was in the store, and what it answered then."""

    service: ServiceProcess
    model: TrainedModel
    readyz_before: httpx.Response
    predict_before: httpx.Response
    livez_before: httpx.Response
    ready_gauge_before: float
    ready_body: dict[str, object]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    return trained_model(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def reference(model: TrainedModel) -> Reference:
    return Reference(model)


@pytest.fixture(scope="module")
def late(model: TrainedModel, module_workdir: Callable[[str], Path]) -> Iterator[LateStart]:
    work = module_workdir("late-model")
    home = service_home(work / "home", None)
    env = {"BENTOML_HOME": str(home), "MODELYARD_MODEL_TAG": model.tag, "MODELYARD_DEVICE": "cpu"}
    [(image, _)] = labelled_images(model.held_out, 1)[:1]
    with ServiceProcess(env, log=work / "service.log") as service:
        service.wait_listening(START_TIMEOUT)
        readyz = httpx.get(f"{service.url}/readyz")
        predict = httpx.post(f"{service.url}/predict", files={"images": (image.name, image.read_bytes())})
        livez = httpx.get(f"{service.url}/livez")
        gauge = total(scrape(service.url), "modelyard_ready")
        add_to_store(model, home)
        body = service.wait_ready(START_TIMEOUT)
        yield LateStart(service, model, readyz, predict, livez, gauge, body)


def test_readyz_is_503_until_the_model_is_loaded_and_warmed_up_then_200(late: LateStart) -> None:
    assert late.readyz_before.status_code == 503
    assert late.readyz_before.json()["ready"] is False
    assert f"model {late.model.tag} is not in the model store yet" in late.readyz_before.json()["reason"]
    assert late.livez_before.status_code == 200
    assert late.ready_gauge_before == 0
    assert late.predict_before.status_code == 503
    assert late.predict_before.json()["detail"][0]["type"] == "not_ready"
    assert "not in the model store yet" in late.predict_before.json()["error"]
    # Once the model appeared in the store, it was loaded and its warm-up checked, then readiness turned 200.
    assert str(late.ready_body["reason"]).startswith(f"serving {late.model.tag} on cpu in fp32; warm-up")
    # The trainer stored a validation image with the model; readiness needed the model to classify it correctly.
    assert "warm-up on warmup.png gave the expected class" in str(late.ready_body["reason"])
    after = httpx.get(f"{late.service.url}/readyz")
    assert after.status_code == 200
    assert after.json()["ready"] is True
    assert total(scrape(late.service.url), "modelyard_ready") == 1


def test_predictions_over_http_match_the_in_process_model(late: LateStart, reference: Reference) -> None:
    images = labelled_images(late.model.held_out, 2)[:10]
    expected = [reference.top(rgb(path.read_bytes()), DEFAULT_TOP_K) for path, _ in images]
    groups = [images[0:1], images[1:3], images[3:6], images[6:10]]  # one and several images per request
    by_files: list[list[tuple[str, float]]] = []
    by_base64: list[list[tuple[str, float]]] = []
    with httpx.Client(base_url=late.service.url, timeout=60) as client:
        for group in groups:
            files = [("images", (path.name, path.read_bytes(), "image/png")) for path, _ in group]
            by_files += answers(client.post("/predict", files=files))
            encoded = [base64.b64encode(path.read_bytes()).decode() for path, _ in group]
            by_base64 += answers(client.post("/predict_base64", json={"images": encoded}))
        last = client.post("/predict", files=files)
        tags = {image["model_tag"] for image in last.json()}
    assert tags == {late.model.tag}
    assert last.headers["content-type"] == "application/json"  # named by the service, not derived per response
    for got in (by_files, by_base64):
        assert len(got) == len(expected)
        for answer, reference_answer in zip(got, expected, strict=True):
            assert [name for name, _ in answer] == [name for name, _ in reference_answer]
            assert [p for _, p in answer] == pytest.approx([p for _, p in reference_answer], abs=1e-5)
    # The model is a real classifier, not a constant: its top classes follow the digits it is shown.
    assert len({answer[0][0] for answer in by_files}) >= 3


def test_eight_concurrent_clients_are_all_answered(late: LateStart, reference: Reference) -> None:
    images = labelled_images(late.model.held_out, 1)
    expected = {path.name: reference.top(rgb(path.read_bytes()), 1)[0][0] for path, _ in images}

    def client_session(offset: int) -> list[tuple[int, str, str]]:
        results = []
        with httpx.Client(base_url=late.service.url, timeout=120) as client:
            for step in range(4):
                path, _ = images[(offset + step) % len(images)]
                response = client.post("/predict", files={"images": (path.name, path.read_bytes())})
                top = response.json()[0]["top"][0]["class_name"] if response.status_code == 200 else response.text
                results.append((response.status_code, path.name, top))
        return results

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = [item for session in pool.map(client_session, range(8)) for item in session]
    assert [status for status, _, _ in results] == [200] * 32, results
    assert all(top == expected[name] for _, name, top in results)


def test_metrics_count_the_requests_made(late: LateStart) -> None:
    url = late.service.url
    [(image, _), (other, _)] = labelled_images(late.model.held_out, 1)[:2]
    before = scrape(url)
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(3):
            client.post("/predict", files=[("images", (image.name, image.read_bytes())), ("images", (other.name, b""))])
        for _ in range(2):
            assert client.post("/predict", files={"images": (image.name, image.read_bytes())}).status_code == 200
        assert client.post("/predict_base64", json={"images": ["bm90IGFuIGltYWdl"]}).status_code == 400
    after = scrape(url)

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("bentoml_service_request_total", endpoint="/predict", http_response_code="400") == 3
    assert grew("bentoml_service_request_total", endpoint="/predict", http_response_code="200") == 2
    assert grew("bentoml_service_request_total", endpoint="/predict_base64", http_response_code="400") == 1
    assert grew("bentoml_service_request_duration_seconds_count", endpoint="/predict") == 5
    assert grew("modelyard_rejected_inputs_total", reason="empty") == 3
    assert grew("modelyard_rejected_inputs_total", reason="not_an_image") == 1
    assert grew("modelyard_predictions_total", model_tag=late.model.tag) == 2
    assert grew("modelyard_batch_size_sum") == 2
    assert total(after, "modelyard_model_info", model_tag=late.model.tag, model_name="digits") == 1


def test_the_openapi_document_describes_both_prediction_apis(late: LateStart) -> None:
    document = httpx.get(f"{late.service.url}/docs.json").json()
    upload = document["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert list(upload) == ["multipart/form-data"]
    assert "images" in upload["multipart/form-data"]["schema"]["properties"]
    encoded = document["paths"]["/predict_base64"]["post"]["requestBody"]["content"]
    assert list(encoded) == ["application/json"]
    for path in ("/predict", "/predict_base64"):
        answer = document["paths"][path]["post"]["responses"]["200"]["content"]
        assert list(answer) == ["application/json"]
        assert answer["application/json"]["schema"]["items"] == {"$ref": "#/components/schemas/ImagePrediction"}


def test_warm_up_checks_the_known_input_stored_with_the_model(model: TrainedModel, reference: Reference) -> None:
    classifier = Classifier(load_from_store(model.tag, "cpu", store=model.store), torch.device("cpu"))
    path, _ = labelled_images(model.held_out, 1)[0]
    pixels = rgb(path.read_bytes())
    answered = reference.top(pixels, 1)[0][0]
    assert warm_up(classifier, WarmupSample(pixels, answered, path.name)) == (
        f"warm-up on {path.name} gave the expected class {answered!r}"
    )
    wrong = next(name for name in reference.class_names if name != answered)
    with pytest.raises(ValueError, match=f"the model answered {answered!r}, the expected class is {wrong!r}"):
        warm_up(classifier, WarmupSample(pixels, wrong, path.name))
    assert "the same valid answer twice" in warm_up(classifier, None)


def test_a_model_that_fails_its_warm_up_never_becomes_ready(
    model: TrainedModel, reference: Reference, tmp_path: Path
) -> None:
    path, _ = labelled_images(model.held_out, 1)[0]
    answered = reference.top(rgb(path.read_bytes()), 1)[0][0]
    wrong = next(name for name in reference.class_names if name != answered)
    name, version = model.tag.split(":")
    folder = tmp_path / "home" / "models" / name / version
    shutil.copytree(model.folder, folder)
    (folder.parent / "latest").write_text(version)
    shutil.copy(path, folder / "warmup.png")
    info = json.loads((folder / "modelyard.json").read_text())
    (folder / "modelyard.json").write_text(json.dumps({**info, "warmup": {"file": "warmup.png", "className": wrong}}))
    env = {"BENTOML_HOME": str(tmp_path / "home"), "MODELYARD_MODEL_TAG": model.tag, "MODELYARD_DEVICE": "cpu"}
    with ServiceProcess(env, log=tmp_path / "service.log") as service:
        # Loading and the warm-up end in a state that will not change: not ready, saying why.
        service.wait_for(lambda _, body: "cannot serve" in str(body.get("reason")), START_TIMEOUT, "give up")
        readyz = httpx.get(f"{service.url}/readyz")
        assert readyz.status_code == 503
        assert f"the model answered {answered!r}, the expected class is {wrong!r}" in readyz.json()["reason"]
        assert httpx.get(f"{service.url}/livez").status_code == 200
        refused = httpx.post(f"{service.url}/predict", files={"images": (path.name, path.read_bytes())})
        assert refused.status_code == 503
        assert "cannot serve" in refused.json()["error"]


def test_the_access_log_is_off_unless_switched_on(late: LateStart, tmp_path: Path) -> None:
    # The late service, with the default, has answered /predict (the fixture asked before the model was there).
    assert late.service.log is not None
    assert "path=/predict" not in late.service.log.read_text()
    # Switched on, BentoML writes a line per request; a service without its model answers 503 straight away.
    log = tmp_path / "service.log"
    env = {
        "BENTOML_HOME": str(tmp_path / "home"),
        "MODELYARD_MODEL_TAG": "absent:v1",
        "MODELYARD_DEVICE": "cpu",
        "MODELYARD_ACCESS_LOG": "on",
    }
    with ServiceProcess(env, log=log) as service:
        service.wait_listening(START_TIMEOUT)
        refused = httpx.post(f"{service.url}/predict", files={"images": ("a.png", b"not read")})
        assert refused.status_code == 503
        line = eventually(
            lambda: next((line for line in log.read_text().splitlines() if "path=/predict" in line), None),
            what="the access log's line",
        )
    assert "method=POST" in line
    assert "status=503" in line
