"""Bad input against the real service: every kind gets a 4xx JSON answer that says why (or, for unusual but valid
images, the same prediction as the plain RGB image), the worker never dies, and a schema-driven fuzz finds no 5xx."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from PIL import Image
from schemathesis import GenerationMode

from modelyard.bento.process import ServiceProcess
from modelyard.bento.settings import DEFAULT_TOP_K
from tests.integration.bento_support import (
    Reference,
    TrainedModel,
    answers,
    labelled_images,
    rgb,
    service_home,
    trained_model,
    worker_pids,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pathspec.*"),
]

# Small limits, so that "huge" inputs are cheap to make.
LIMITS = {
    "MODELYARD_MAX_IMAGE_PIXELS": "250000",
    "MODELYARD_MAX_IMAGE_BYTES": "200000",
    "MODELYARD_MAX_REQUEST_BYTES": "1000000",
    "MODELYARD_MAX_IMAGES_PER_REQUEST": "4",
}


@dataclass
class Server:
    service: ServiceProcess
    model: TrainedModel
    digit: bytes  # a held-out PNG
    workers: set[int]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, module_workdir: Callable[[str], Path]) -> Iterator[Server]:
    model = trained_model(tmp_path_factory.getbasetemp())
    work = module_workdir("bad-inputs")
    env = {"BENTOML_HOME": str(service_home(work / "home", model)), "MODELYARD_MODEL_TAG": model.tag, **LIMITS}
    with ServiceProcess({**env, "MODELYARD_DEVICE": "cpu"}, log=work / "service.log") as service:
        service.wait_ready(180)
        [(digit, _)] = labelled_images(model.held_out, 1)[:1]
        yield Server(service, model, digit.read_bytes(), worker_pids(service))


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def bomb_png(side: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (side + 1) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def noise(width: int, height: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(7).integers(0, 256, (height, width, 3), dtype=np.uint8))


def smooth(width: int, height: int) -> Image.Image:
    ramp = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, axis=0)
    return Image.fromarray(np.stack([ramp, ramp, ramp], axis=2))


def multipart(*parts: bytes) -> dict[str, Any]:
    return {"files": [("images", (f"image{i}.png", part, "image/png")) for i, part in enumerate(parts)]}


def damaged(png: bytes) -> bytes:
    data = bytearray(png)
    data[20] ^= 0xFF  # inside IHDR: its CRC no longer matches
    return bytes(data)


# (name, route, request builder given a valid digit PNG, status, detail type, words of the message)
CASES: list[tuple[str, str, Any, int, str, str]] = [
    ("zero bytes", "/predict", lambda d: multipart(b""), 400, "empty", "the image is empty (0 bytes)"),
    ("text file", "/predict", lambda d: multipart(b"just some text"), 400, "not_an_image", "not an image"),
    ("truncated", "/predict", lambda d: multipart(d[: len(d) // 2]), 400, "corrupt_image", "truncated or corrupt"),
    ("corrupt header", "/predict", lambda d: multipart(damaged(d)), 400, "corrupt_image", "header is damaged"),
    ("bomb", "/predict", lambda d: multipart(bomb_png(5_000)), 400, "decompression_bomb", "declare 5000x5000"),
    (
        "huge image",
        "/predict",
        lambda d: multipart(encode(smooth(700, 700), "JPEG")),
        400,
        "too_many_pixels",
        "700x700 = 490000 pixels; the limit is 250000",
    ),
    (
        "too many bytes",
        "/predict",
        lambda d: multipart(encode(noise(300, 300), "PNG")),
        400,
        "too_many_bytes",
        "the limit is 195.3 KiB",
    ),
    (
        "float image",
        "/predict",
        lambda d: multipart(encode(Image.new("F", (8, 8), 0.5), "TIFF")),
        400,
        "unsupported_mode",
        "floating-point",
    ),
    ("five images", "/predict", lambda d: multipart(*[d] * 5), 400, "too_many_images", "5 images in one request"),
    (
        "body over the limit",
        "/predict",
        lambda d: multipart(b"x" * 1_100_000),
        413,
        "request_too_large",
        "exceeds the limit of 1000000 bytes",
    ),
    (
        "text, not a file",
        "/predict",
        lambda d: {"data": {"images": "http://192.0.2.1/image.png"}, "files": {"images": ("a.png", d)}},
        400,
        "not_a_file",
        "must be a file upload",
    ),
    (
        "malformed multipart",
        "/predict",
        lambda d: {
            "content": b"--xx\r\nContent-Type: image/png\r\n\r\nabc\r\n--xx--\r\n",
            "headers": {"content-type": "multipart/form-data; boundary=xx"},
        },
        400,
        "malformed_request",
        "malformed multipart body",
    ),
    (
        "another field",
        "/predict",
        lambda d: {"files": [("images", ("a.png", d)), ("other", ("b.png", d))]},
        400,
        "malformed_request",
        "unexpected form field 'other'",
    ),
    ("JSON to /predict", "/predict", lambda d: {"json": {"images": []}}, 415, "unsupported_media_type", "send multi"),
    (
        "no images field",
        "/predict",
        lambda d: {"content": b"--xx--\r\n", "headers": {"content-type": "multipart/form-data; boundary=xx"}},
        400,
        "missing",
        "Field required",
    ),
    ("bad base64", "/predict_base64", lambda d: {"json": {"images": ["@@@"]}}, 400, "bad_base64", "not valid base64"),
    (
        "base64 of text",
        "/predict_base64",
        lambda d: {"json": {"images": [base64.b64encode(b"hello").decode()]}},
        400,
        "not_an_image",
        "not an image",
    ),
    ("empty list", "/predict_base64", lambda d: {"json": {"images": []}}, 400, "no_images", "at least one image"),
    ("not a list", "/predict_base64", lambda d: {"json": {"images": "abc"}}, 400, "list_type", "valid array"),
    (
        "invalid JSON",
        "/predict_base64",
        lambda d: {"content": b"{images", "headers": {"content-type": "application/json"}},
        400,
        "json_invalid",
        "Invalid JSON",
    ),
    ("files to base64", "/predict_base64", lambda d: multipart(d), 415, "unsupported_media_type", "application/json"),
]


@pytest.mark.parametrize(
    ("route", "build", "status", "reason", "words"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_bad_input_gets_a_4xx_that_says_why(
    server: Server, route: str, build: Any, status: int, reason: str, words: str
) -> None:
    url = server.service.url
    response = httpx.post(f"{url}{route}", timeout=60, **build(server.digit))
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["detail"][0]["type"] == reason
    assert words in body["detail"][0]["msg"]
    # The server still answers, with the same worker.
    assert httpx.post(f"{url}/predict", timeout=60, **multipart(server.digit)).status_code == 200
    assert worker_pids(server.service) == server.workers


def identity_palette(grey: np.ndarray) -> Image.Image:
    image = Image.fromarray(grey, mode="L").convert("P")
    image.putpalette([value for level in range(256) for value in (level, level, level)])
    image.putdata(grey.flatten().tolist())
    return image


def variants(grey: np.ndarray, other: np.ndarray) -> dict[str, bytes]:
    """The same picture in unusual modes that convert back to exactly these grey pixels."""
    plain = Image.fromarray(grey, mode="L")
    opaque = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    frames = [identity_palette(grey), identity_palette(other)]
    return {
        "palette PNG": encode(identity_palette(grey), "PNG"),
        "16-bit PNG": encode(Image.fromarray(grey.astype(np.uint16) * 257), "PNG"),
        "RGBA PNG": encode(Image.fromarray(opaque, mode="RGBA"), "PNG"),
        "grey+alpha PNG": encode(plain.convert("LA"), "PNG"),
        "CMYK TIFF": encode(plain.convert("RGB").convert("CMYK"), "TIFF"),
        "animated GIF": encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
    }


def test_unusual_modes_get_the_prediction_of_the_plain_image(server: Server) -> None:
    reference = Reference(server.model)
    images = labelled_images(server.model.held_out, 1)
    grey, other = (np.asarray(Image.open(path).convert("L")) for path, _ in images[:2])
    expected = reference.top(np.dstack([grey] * 3), DEFAULT_TOP_K)
    for name, data in variants(grey, other).items():
        response = httpx.post(f"{server.service.url}/predict", timeout=60, **multipart(data))
        [answer] = answers(response)
        assert [label for label, _ in answer] == [label for label, _ in expected], name
        assert [p for _, p in answer] == pytest.approx([p for _, p in expected], abs=1e-5), name
    # A CMYK JPEG is lossy: it must be answered, with a distribution over the model's classes.
    cmyk = encode(Image.fromarray(rgb(server.digit)).convert("CMYK"), "JPEG", quality=95)
    [answer] = answers(httpx.post(f"{server.service.url}/predict", timeout=60, **multipart(cmyk)))
    assert {label for label, _ in answer} <= set(reference.class_names)
    assert worker_pids(server.service) == server.workers


def test_fuzzing_the_openapi_document_finds_no_server_error(server: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{server.service.url}/docs.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {"/predict", "/predict_base64"} <= {operation.path for operation in operations}
    answered: list[tuple[str, int]] = []
    for operation in operations:
        # An operation without a body (the health and metrics routes) has nothing to make invalid.
        has_body = bool(operation.get_request_payload_content_types())
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if has_body else (GenerationMode.POSITIVE,):

            @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case: Any) -> None:
                response = case.call(base_url=server.service.url, timeout=60)
                answered.append((f"{case.method} {case.path}", response.status_code))
                assert response.status_code < 500, f"{case.method} {case.path}: {response.text[:500]}"

            call()
    assert len(answered) >= 4 * len(operations), answered
    statuses = {route: {status for called, status in answered if called == route} for route, _ in answered}
    assert any(status >= 400 for status in statuses["POST /predict"]), statuses  # the fuzz reached the validators
    assert worker_pids(server.service) == server.workers


def test_digit_png_is_a_grey_png(server: Server) -> None:
    # The variants above rely on it: the held-out digits are 8-bit greyscale PNGs.
    with Image.open(io.BytesIO(server.digit)) as image:
        assert (image.format, image.mode) == ("PNG", "L")
