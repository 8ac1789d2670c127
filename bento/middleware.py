"""The service's front door, an ASGI middleware in front of BentoML's routes.

It answers what BentoML would get wrong or could not say: /readyz with the reason it is not ready; predictions while
the model is not ready (503 with the reason, not BentoML's generic 500 text); a wrong Content-Type (415); a body over
the byte limit (413, counted as it streams, before anything is parsed); and a multipart body that BentoML's parser
would fail on or that carries text instead of files (400; BentoML would answer 500, or try to download a URL given as
text). Everything else, and every image-level check, is BentoML's and the input validators' job.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from python_multipart.multipart import parse_options_header
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelyard.bento.inputs import InputLimits, RejectReason
from modelyard.bento.runtime import Readiness


def error_body(reason: RejectReason, message: str, loc: list[str | int] | None = None) -> dict[str, Any]:
    """The shape of every 4xx/5xx this service writes itself: BentoML's validation-error shape, so that clients read
    `detail[].type` (the reason) and `detail[].msg` the same way whichever layer refused the request."""
    return {"error": message, "detail": [{"type": reason.value, "loc": loc or [], "msg": message}]}


async def _send_json(send: Send, status: int, body: Mapping[str, Any]) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class _TooLargeError(Exception):
    pass


class _DisconnectedError(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _DisconnectedError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLargeError
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


# Starlette's limit on files in one form: more fall to the trial parse, which reports them.
MAX_PLAIN_PARTS = 1000
_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# RFC 2046's boundary characters, without the space: any other boundary (quoted oddly, or with a line end in it) goes
# to the trial parse.
_BOUNDARY = re.compile(rb"[0-9A-Za-z'()+_,./:=?-]{1,70}")


@functools.lru_cache(maxsize=4)
def _plain_part_head(file_field: str) -> re.Pattern[bytes]:
    # A file part's head as curl, requests and httpx write it: the disposition, then at most a media type. The
    # filename is printable, without quotes or backslashes, which Starlette's header parsing would treat specially.
    return re.compile(
        rb'Content-Disposition: form-data; name="' + re.escape(file_field.encode()) + rb'"; '
        rb'filename="[\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]*"\r\n'
        rb"(?:Content-Type: " + _TOKEN + rb"/" + _TOKEN + rb"\r\n)?\r\n"
    )


def plain_upload_files(headers: Headers, body: bytes, file_field: str) -> int | None:
    """How many files the body holds when it is a multipart form in its plainest shape, which Starlette's parser
    (BentoML's) accepts as only files in `file_field`; None when it is not in that shape. The shape: the first
    delimiter at the very start, every part's head as `_plain_part_head`, each later delimiter followed by a line end
    (a next part) or by the closing `--` and the end of the body. Most clients send exactly that. This looks at the
    delimiters and the heads only, without copying a byte, where the trial parse ran Python for every header byte
    (6.6% of a worker's event loop on the H200). Anything else gets the trial parse; a property test checks that
    this never accepts what that refuses."""
    _, params = parse_options_header(headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not isinstance(boundary, bytes) or not _BOUNDARY.fullmatch(boundary):
        return None
    delimiter = b"\r\n--" + boundary
    if not body.startswith(delimiter[2:] + b"\r\n"):
        return None
    head = _plain_part_head(file_field)
    start = len(delimiter)
    for files in range(1, MAX_PLAIN_PARTS + 1):
        matched = head.match(body, start)
        if matched is None:
            return None
        # From the end of the head: the line end that closes it is not the one that opens a delimiter.
        found = body.find(delimiter, matched.end())
        if found < 0:
            return None
        after = found + len(delimiter)
        if body.startswith(b"\r\n", after):
            start = after + 2
            continue
        # Not a next part: then the closing delimiter, at the end (a line end may follow).
        return files if len(body) - after <= 4 and body[after:] in (b"--", b"--\r\n") else None
    return None


async def _multipart_problem(headers: Headers, body: bytes, file_field: str) -> str | None:
    """None when BentoML will accept the body, else what is wrong."""
    if plain_upload_files(headers, body, file_field) is not None:
        return None
    return await trial_parse_problem(headers, body, file_field)


async def trial_parse_problem(headers: Headers, body: bytes, file_field: str) -> str | None:
    """Parse the body with the parser BentoML uses; None when BentoML will accept it, else what is wrong."""

    async def stream() -> Any:
        yield body

    try:
        form = await MultiPartParser(headers, stream()).parse()
    except MultiPartException as error:
        return f"malformed multipart body: {error.message}"
    try:
        # BentoML JSON-decodes any other field and fails with a 500 on a file there: only the one field is allowed.
        for name, value in form.multi_items():
            if name != file_field:
                return f"unexpected form field {name!r}: send the images as files in {file_field!r}"
            if not isinstance(value, UploadFile):
                return f"the form field {file_field!r} must be a file upload (with a filename), not text"
    finally:
        await form.close()
    return None


class RequestGuard:
    """ASGI middleware; `routes` maps each prediction path to the one media type it accepts."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Mapping[str, str],
        file_field: str,
        limits: InputLimits,
        readiness: Readiness,
        count_rejection: Callable[[RejectReason], None],
    ) -> None:
        self.app = app
        self.routes = dict(routes)
        self.file_field = file_field
        self.limits = limits
        self.readiness = readiness
        self.count_rejection = count_rejection

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if path == "/readyz" and method in ("GET", "HEAD"):
            ready, reason = self.readiness.get()
            await _send_json(send, 200 if ready else 503, {"ready": ready, "reason": reason})
            return
        media_type = self.routes.get(path)
        if media_type is None or method != "POST":
            await self.app(scope, receive, send)
            return
        await self._guard_prediction(scope, receive, send, media_type)

    async def _refuse(self, send: Send, status: int, reason: RejectReason, message: str) -> None:
        self.count_rejection(reason)
        await _send_json(send, status, error_body(reason, message))

    async def _guard_prediction(self, scope: Scope, receive: Receive, send: Send, media_type: str) -> None:
        ready, why = self.readiness.get()
        if not ready:
            await _send_json(send, 503, error_body(RejectReason.NOT_READY, f"the model is not ready: {why}"))
            return
        headers = Headers(scope=scope)
        sent_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if sent_type != media_type:
            message = f"send {media_type} to {scope['path']}, not {sent_type or 'no Content-Type'}"
            await self._refuse(send, 415, RejectReason.UNSUPPORTED_MEDIA_TYPE, message)
            return
        limit = self.limits.max_request_bytes
        too_large = f"the request body exceeds the limit of {limit} bytes"
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(send, 413, RejectReason.REQUEST_TOO_LARGE, too_large)
            return
        try:
            body = await _read_body(receive, limit)
        except _TooLargeError:
            await self._refuse(send, 413, RejectReason.REQUEST_TOO_LARGE, too_large)
            return
        except _DisconnectedError:
            return
        if media_type == "multipart/form-data":
            problem = await _multipart_problem(headers, body, self.file_field)
            if problem is not None:
                reason = RejectReason.NOT_A_FILE if "file upload" in problem else RejectReason.MALFORMED_REQUEST
                await self._refuse(send, 400, reason, problem)
                return
        await self.app(scope, _replay(body, receive), send)


def _replay(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    """A receive() that hands the buffered body to the app once, then waits on the client as the original would."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
