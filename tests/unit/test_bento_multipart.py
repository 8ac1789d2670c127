"""The request guard's judgement of multipart bodies: the plain shape it lets through without a trial parse is one
Starlette's parser (BentoML's) accepts as files in the one field, whatever the bytes around it."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import httpx
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from modelyard.bento.middleware import plain_upload_files, trial_parse_problem

pytestmark = pytest.mark.unit
T = TypeVar("T")

FIELD = "images"
# What a part's bytes, a filename or a mutation is drawn from: the characters of the format's structure, often.
STRUCTURE = [b"\r\n", b"\r", b"\n", b"--", b"-", b'"', b";", b" ", b"=", b"\\", b":", b"\x00", b"\xe9"]


def _headers(boundary: bytes) -> Headers:
    # Quoted: some boundary characters (= , / : ?) would otherwise end the parameter early.
    return Headers({"content-type": 'multipart/form-data; boundary="' + boundary.decode("latin-1") + '"'})


def _quietly(run: Callable[[], Coroutine[Any, Any, T]]) -> T:
    # A body that ends inside a file's data leaves Starlette's temporary file unclosed (it is not in the form it
    # returns), and garbage collection then warns. Not the guard's to fix; not this test's subject.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        return asyncio.run(run())


def _trial_parse(headers: Headers, body: bytes) -> str | None:
    return _quietly(lambda: trial_parse_problem(headers, body, FIELD))


def _starlette_files(headers: Headers, body: bytes) -> list[tuple[str, bytes]] | None:
    """(field, file bytes) of every item as Starlette parses the body, None where it refuses it or finds a text."""

    async def parse() -> list[tuple[str, bytes]] | None:
        async def stream() -> Any:
            yield body

        try:
            form = await MultiPartParser(headers, stream()).parse()
        except MultiPartException:
            return None
        try:
            items = []
            for name, value in form.multi_items():
                if not isinstance(value, UploadFile):
                    return None
                items.append((name, await value.read()))
            return items
        finally:
            await form.close()

    return _quietly(parse)


def _body(boundary: bytes, parts: list[tuple[bytes, bytes | None, bytes]], epilogue: bytes = b"") -> bytes:
    chunks = []
    for filename, media_type, data in parts:
        head = b'Content-Disposition: form-data; name="images"; filename="' + filename + b'"\r\n'
        if media_type is not None:
            head += b"Content-Type: " + media_type + b"\r\n"
        chunks.append(b"--" + boundary + b"\r\n" + head + b"\r\n" + data + b"\r\n")
    return b"".join(chunks) + b"--" + boundary + b"--" + epilogue


def _printable_unquoted(name: bytes) -> bool:
    return all(32 <= byte != 127 and byte not in b'"\\' for byte in name)


structured_bytes = st.lists(st.one_of(st.sampled_from(STRUCTURE), st.binary(max_size=6)), max_size=12).map(b"".join)
boundaries = st.from_regex(rb"[0-9A-Za-z'()+_,./:=?-]{1,24}", fullmatch=True)
filenames = st.one_of(st.just(b"photo.jpg"), st.text(max_size=12).map(lambda text: text.encode()), structured_bytes)
media_types = st.one_of(st.none(), st.sampled_from([b"image/jpeg", b"image/png", b"application/octet-stream"]))


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A body in the plain shape, often with the boundary among the data, then changed by zero or more edits."""
    boundary = draw(boundaries)
    delimiter_pieces = [b"\r\n--" + boundary, b"--" + boundary, boundary, b"\r\n--" + boundary + b"--"]
    data = st.lists(st.one_of(structured_bytes, st.sampled_from(delimiter_pieces)), max_size=5).map(b"".join)
    parts = draw(st.lists(st.tuples(filenames, media_types, data), min_size=1, max_size=4))
    body = _body(boundary, parts, draw(st.sampled_from([b"", b"\r\n", b"\r\nepilogue", b"--"])))
    for _ in range(draw(st.integers(0, 3))):
        start = draw(st.integers(0, len(body)))
        end = draw(st.integers(start, min(len(body), start + 8)))
        insert = draw(st.one_of(st.sampled_from([*STRUCTURE, *delimiter_pieces, b""]), structured_bytes))
        body = body[:start] + insert + body[end:]
    return boundary, body


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies())
def test_a_body_let_through_unparsed_is_one_starlette_parses_into_files_in_the_field(sent: tuple[bytes, bytes]) -> None:
    boundary, body = sent
    headers = _headers(boundary)
    count = plain_upload_files(headers, body, FIELD)
    if count is None:
        return
    assert _trial_parse(headers, body) is None
    files = _starlette_files(headers, body)
    assert files is not None
    assert [name for name, _ in files] == [FIELD] * count


@settings(max_examples=200, deadline=None)
@given(boundaries, st.lists(st.tuples(filenames, media_types, structured_bytes), min_size=1, max_size=4))
def test_plain_bodies_are_recognised_and_their_files_are_what_was_sent(
    boundary: bytes, parts: list[tuple[bytes, bytes | None, bytes]]
) -> None:
    body = _body(boundary, parts)
    headers = _headers(boundary)
    delimiter = b"\r\n--" + boundary
    # Plain unless some part's data carries the delimiter (then that is where Starlette ends the part too) or a
    # filename has a character the check leaves to the trial parse.
    plain = all((data + delimiter).find(delimiter) == len(data) for _, _, data in parts)
    plain = plain and all(_printable_unquoted(name) for name, _, _ in parts)
    assert plain_upload_files(headers, body, FIELD) == (len(parts) if plain else None)
    if plain:
        assert _starlette_files(headers, body) == [(FIELD, data) for _, _, data in parts]


def test_what_httpx_sends_is_plain_and_other_shapes_get_the_trial_parse() -> None:
    jpeg = b"\xff\xd8\xff\xe0 some bytes \r\n-- \xff\xd9"
    files = [("images", ("a.jpg", jpeg, "image/jpeg")), ("images", ("b.png", b"\x89PNG", "image/png"))]
    request = httpx.Request("POST", "http://127.0.0.1/predict", files=files)
    headers = Headers({"content-type": request.headers["content-type"]})
    body = request.read()
    assert plain_upload_files(headers, body, FIELD) == 2
    assert _starlette_files(headers, body) == [(FIELD, jpeg), (FIELD, b"\x89PNG")]
    boundary = headers["content-type"].split("boundary=")[1].encode()
    # Each of these Starlette may accept or refuse; none is the plain shape, so the guard parses it to find out.
    other_shapes = {
        "another field": body.replace(b'name="images"', b'name="image"', 1),
        "a text field": body.replace(b'; filename="a.jpg"', b"", 1),
        "a preamble": b"preamble\r\n" + body,
        "LF line ends": body.replace(b"\r\n", b"\n"),
        "no closing delimiter": body[: body.rindex(b"--" + boundary + b"--")],
        "an extra header": body.replace(b"Content-Type: image/jpeg", b"Content-Type: image/jpeg\r\nX-A: b", 1),
        "lower-case header": body.replace(b"Content-Disposition", b"content-disposition", 1),
        "a quoted filename": body.replace(b'filename="a.jpg"', b'filename="a\\"b.jpg"', 1),
    }
    for shape, changed in other_shapes.items():
        assert plain_upload_files(headers, changed, FIELD) is None, shape
    assert plain_upload_files(Headers({"content-type": "multipart/form-data"}), body, FIELD) is None
    assert _trial_parse(headers, other_shapes["a text field"]) == (
        "the form field 'images' must be a file upload (with a filename), not text"
    )


# What curl 7.88.1 sent for `curl -F "images=@a.jpg;type=image/jpeg"` (recorded by a socket listening on 127.0.0.1).
CURL_BOUNDARY = b"------------------------dc8bd78fbdec336f"
CURL_BODY = (
    b"--" + CURL_BOUNDARY + b'\r\nContent-Disposition: form-data; name="images"; filename="a.jpg"\r\n'
    b"Content-Type: image/jpeg\r\n\r\nJPEGDATA\r\n--" + CURL_BOUNDARY + b"--\r\n"
)


def test_what_requests_and_curl_send_is_plain() -> None:
    prepared = requests.Request(
        "POST", "http://127.0.0.1/predict", files=[("images", ("a.jpg", b"\xff\xd8 x \xff\xd9", "image/jpeg"))] * 3
    ).prepare()
    assert isinstance(prepared.body, bytes)
    headers = Headers({"content-type": prepared.headers["Content-Type"]})
    assert plain_upload_files(headers, prepared.body, FIELD) == 3
    assert _starlette_files(headers, prepared.body) == [(FIELD, b"\xff\xd8 x \xff\xd9")] * 3
    curl_headers = Headers({"content-type": "multipart/form-data; boundary=" + CURL_BOUNDARY.decode()})
    assert plain_upload_files(curl_headers, CURL_BODY, FIELD) == 1
    assert _starlette_files(curl_headers, CURL_BODY) == [(FIELD, b"JPEGDATA")]


def test_a_delimiter_right_after_a_parts_head_is_data_not_the_parts_end() -> None:
    # Found by the property above: the head's closing line end cannot double as the delimiter's. Starlette reads the
    # part's data as "--B--" and then finds no closing delimiter.
    body = _body(b"B", [(b"a.jpg", None, b"")])
    cut = body.replace(b'"\r\n\r\n\r\n--B--', b'"\r\n\r\n--B--')
    assert plain_upload_files(_headers(b"B"), body, FIELD) == 1
    assert plain_upload_files(_headers(b"B"), cut, FIELD) is None
    assert _starlette_files(_headers(b"B"), cut) == []
