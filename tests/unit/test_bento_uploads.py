"""The service's multipart input model, as BentoML builds it from the API's annotation: uploads are decoded where the
multipart parser left them, without the temporary file BentoML's own file validator writes for each."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pydantic
import pytest
from PIL import Image
from starlette.datastructures import Headers, UploadFile

pytestmark = [
    pytest.mark.unit,
    # bentoml's import reaches pathspec's deprecated pattern class; not ours to fix.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pathspec.*"),
]


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(buffer, "PNG")
    return buffer.getvalue()


def upload(data: bytes, name: str = "a.png") -> UploadFile:
    return UploadFile(io.BytesIO(data), size=len(data), filename=name, headers=Headers({"content-type": "image/png"}))


@pytest.fixture
def input_model() -> Any:
    from modelyard.bento import service

    return cast(Any, service.ImageClassifier).apis["predict"].input_spec


@pytest.fixture
def temporary_files(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every temporary file opened while the test runs."""
    opened: list[object] = []
    original: Callable[..., Any] = tempfile.NamedTemporaryFile

    def recording(*args: Any, **kwargs: Any) -> Any:
        opened.append(kwargs.get("suffix"))
        return original(*args, **kwargs)

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", recording)
    return opened


def test_uploads_are_decoded_without_a_temporary_file(input_model: Any, temporary_files: list[object]) -> None:
    parsed = input_model.model_validate({"images": [upload(png(20, 10)), upload(png(3, 4), "b.png")]})
    assert [image.pixels.shape for image in parsed.images] == [(10, 20, 3), (4, 3, 3)]
    assert parsed.images[0].pixels[0, 0].tolist() == [200, 10, 10]
    assert temporary_files == []


def test_a_path_from_a_python_caller_is_still_read(input_model: Any, tmp_path: Path) -> None:
    path = tmp_path / "c.png"
    path.write_bytes(png(5, 6))
    assert input_model.model_validate({"images": [path]}).images[0].pixels.shape == (6, 5, 3)


@pytest.mark.parametrize(
    ("data", "reason", "message"),
    [(b"", "empty", "the image is empty"), (b"\x89PNG\r\n\x1a\nbroken", "corrupt_image", "starts like a PNG")],
)
def test_a_bad_upload_is_refused_with_its_reason(input_model: Any, data: bytes, reason: str, message: str) -> None:
    with pytest.raises(pydantic.ValidationError) as refused:
        input_model.model_validate({"images": [upload(png(2, 2)), upload(data, "bad.png")]})
    [error] = refused.value.errors()
    assert error["type"] == reason
    assert message in error["msg"]
    assert error["loc"] == ("images", 1)


def test_each_api_caller_is_built_once_per_service_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    """BentoML's descriptor would build a new caller, signature inspection included, at every lookup: twice a
    request. The instance keeps one per API, and it still calls the API's own function."""
    from modelyard.bento import service

    apis = cast(Any, service.ImageClassifier).apis
    assert set(apis) == {"predict", "predict_base64"}
    monkeypatch.setenv("MODELYARD_MODEL_TAG", "nothing:here")
    monkeypatch.setattr(service.ModelLoader, "start", lambda self: None)  # no model to load here
    instance = cast(Any, service.ImageClassifier).inner()
    for name in apis:
        caller = getattr(instance, name)
        assert getattr(instance, name) is caller
        assert caller.local.func is apis[name].func
