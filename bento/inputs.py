"""Turning untrusted bytes into RGB pixels for the classifier, or into an error that says why not.

Pure and synchronous: no BentoML, no torch. Every input is bounded before it is decoded (bytes, declared pixels, number
of images), only a fixed list of raster formats is ever parsed (Pillow's other plugins, such as EPS, would run external
programs), and whatever Pillow raises on hostile data becomes a `RejectedInputError` with a machine-readable reason.
"""

from __future__ import annotations

import base64
import binascii
import enum
import io
import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

RgbImage = npt.NDArray[np.uint8]

# Raster formats a client may send. Pillow identifies a file by its content, never by its name or Content-Type.
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")

# A file whose declared raw size exceeds its compressed size this many times is a decompression bomb rather than a
# big photograph (photos compress about 10-30:1; bombs 1000:1 and more).
BOMB_COMPRESSION_RATIO = 200

# Transparent pixels are shown on white, as a browser would; their hidden colour values are often garbage.
ALPHA_BACKGROUND = (255, 255, 255)

# File signatures of the allowed formats: a file that starts like one but cannot be opened is damaged, not foreign.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)

_DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(rb"\s+")


class RejectReason(enum.StrEnum):
    """Why an input was refused: the `type` of the error the client gets and the label of the rejection metric."""

    EMPTY = "empty"
    NOT_AN_IMAGE = "not_an_image"
    CORRUPT = "corrupt_image"
    TOO_MANY_BYTES = "too_many_bytes"
    TOO_MANY_PIXELS = "too_many_pixels"
    DECOMPRESSION_BOMB = "decompression_bomb"
    UNSUPPORTED_MODE = "unsupported_mode"
    BAD_BASE64 = "bad_base64"
    # Request-level reasons, decided before any image is looked at.
    TOO_MANY_IMAGES = "too_many_images"
    NO_IMAGES = "no_images"
    REQUEST_TOO_LARGE = "request_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    NOT_A_FILE = "not_a_file"
    MALFORMED_REQUEST = "malformed_request"
    # Not the input's fault, so not counted as a rejected input; named here so clients see one set of error types.
    NOT_READY = "not_ready"


class RejectedInputError(ValueError):
    """An input the service refuses, with the reason a client can act on."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class InputLimits:
    """Bounds on what one request may make the service decode (settings.py reads them from the environment).
    Decoding a 16-megapixel image takes about 0.2 s on one CPU core: the defaults accept any photograph."""

    max_image_bytes: int = 16 * 1024 * 1024
    max_image_pixels: int = 4096 * 4096
    max_images_per_request: int = 16
    max_request_bytes: int = 32 * 1024 * 1024

    def __post_init__(self) -> None:
        for field in ("max_image_bytes", "max_image_pixels", "max_images_per_request", "max_request_bytes"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be at least 1")
        # Beyond twice its own MAX_IMAGE_PIXELS Pillow refuses to open a file at all, whatever we allow.
        if Image.MAX_IMAGE_PIXELS is not None and self.max_image_pixels > 2 * Image.MAX_IMAGE_PIXELS:
            raise ValueError(f"max_image_pixels cannot exceed {2 * Image.MAX_IMAGE_PIXELS} (Pillow's hard limit)")


@dataclass(frozen=True)
class DecodedImage:
    """An accepted image: RGB uint8 pixels (HxWx3) plus what it was before conversion, for logs and tests."""

    pixels: RgbImage
    source_format: str
    source_mode: str
    animated: bool


def _human_bytes(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KiB"
    return f"{count / (1024 * 1024):.1f} MiB"


def check_size(size: int, limits: InputLimits, what: str = "image") -> None:
    """Refuse an empty input or one over the byte limit, before anything reads it."""
    if size == 0:
        raise RejectedInputError(RejectReason.EMPTY, f"the {what} is empty (0 bytes)")
    if size > limits.max_image_bytes:
        raise RejectedInputError(
            RejectReason.TOO_MANY_BYTES,
            f"the {what} is {_human_bytes(size)}; the limit is {_human_bytes(limits.max_image_bytes)}",
        )


def decode_base64(text: str, limits: InputLimits) -> bytes:
    """The bytes of a base64 string (standard alphabet, padding required; a `data:image/...;base64,` prefix and
    line breaks are allowed), bounded by the image byte limit before decoding."""
    try:
        compact = _WHITESPACE.sub(b"", _DATA_URL.sub("", text.strip(), count=1).encode("ascii"))
    except UnicodeEncodeError:
        raise RejectedInputError(RejectReason.BAD_BASE64, "not valid base64: non-ASCII characters") from None
    if not compact:
        raise RejectedInputError(RejectReason.EMPTY, "the base64 string is empty")
    # Refuse an oversized payload by its length, before allocating the decoded bytes.
    estimated = len(compact) // 4 * 3 - compact[-2:].count(b"=")
    if estimated > limits.max_image_bytes:
        check_size(estimated, limits, "decoded base64 image")
    try:
        data = base64.b64decode(compact, validate=True)
    except binascii.Error as error:
        raise RejectedInputError(RejectReason.BAD_BASE64, f"not valid base64: {error}") from None
    check_size(len(data), limits, "decoded base64 image")
    return data


def _sixteen_bit_to_rgb(image: Image.Image) -> Image.Image:
    # Pillow's own I;16 → RGB conversion clips at 255, turning almost every 16-bit picture white: scale instead.
    wide = np.asarray(image, dtype=np.uint32)
    if wide.ndim != 2:
        raise RejectedInputError(RejectReason.UNSUPPORTED_MODE, f"unsupported {image.mode} layout {wide.shape}")
    narrow = (np.clip(wide, 0, 65535) >> 8).astype(np.uint8)
    return Image.fromarray(narrow, mode="L").convert("RGB")


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any mode Pillow decodes → RGB: alpha composited on white, palettes expanded, CMYK/YCbCr/LAB/HSV converted,
    16-bit scaled to 8-bit. Float images are refused (their value range is not knowable)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode == "I":
        return _sixteen_bit_to_rgb(image)
    if mode == "F":
        raise RejectedInputError(RejectReason.UNSUPPORTED_MODE, "32-bit floating-point images are not supported")
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as error:
        message = f"cannot convert a {mode} image to RGB: {error}"
        raise RejectedInputError(RejectReason.UNSUPPORTED_MODE, message) from None


def _check_pixels(image: Image.Image, compressed_size: int, limits: InputLimits) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise RejectedInputError(RejectReason.CORRUPT, f"the image declares an empty size {width}x{height}")
    pixels = width * height
    if pixels <= limits.max_image_pixels:
        return
    ratio = pixels * max(len(image.getbands()), 1) / max(compressed_size, 1)
    if ratio > BOMB_COMPRESSION_RATIO:
        raise RejectedInputError(
            RejectReason.DECOMPRESSION_BOMB,
            f"{compressed_size} bytes declare {width}x{height} = {pixels} pixels ({ratio:.0f}:1); "
            f"the limit is {limits.max_image_pixels} pixels",
        )
    raise RejectedInputError(
        RejectReason.TOO_MANY_PIXELS,
        f"the image is {width}x{height} = {pixels} pixels; the limit is {limits.max_image_pixels}",
    )


def _sniff(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for signature, fmt in _SIGNATURES if data.startswith(signature)), None)


def _decoder_error(error: Exception, stage: str) -> RejectedInputError:
    """What Pillow raised on hostile or damaged data, as a rejection."""
    message = str(error) or type(error).__name__
    # Pillow's own guards: declared sizes beyond its hard limit, and compressed text/ICC chunks that inflate unbounded.
    if isinstance(error, Image.DecompressionBombError | Image.DecompressionBombWarning) or "Decompressed" in message:
        return RejectedInputError(RejectReason.DECOMPRESSION_BOMB, f"refused by the decoder: {message}")
    return RejectedInputError(RejectReason.CORRUPT, f"{stage}: {message}")


def decode_image(data: bytes, limits: InputLimits) -> DecodedImage:
    """Decode one image file into RGB pixels, or raise RejectedInputError.

    The first frame of an animation is used; EXIF orientation is applied, so the model sees the picture upright.
    """
    check_size(len(data), limits)
    try:
        opened = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        looks_like = _sniff(data)
        if looks_like is not None:
            raise RejectedInputError(
                RejectReason.CORRUPT, f"starts like a {looks_like} file but its header is damaged"
            ) from None
        raise RejectedInputError(
            RejectReason.NOT_AN_IMAGE,
            f"not an image in a supported format ({', '.join(ALLOWED_FORMATS)})",
        ) from None
    except Exception as error:  # a hostile header can make any plugin raise anything
        raise _decoder_error(error, "unreadable image header") from None
    with opened as image:
        source_format = image.format or "unknown"
        source_mode = image.mode
        _check_pixels(image, len(data), limits)
        try:
            # is_animated looks for a second frame only; n_frames would walk every frame of the file.
            animated = bool(getattr(image, "is_animated", False))
            image.seek(0)
            image.load()
            # In place: without an orientation to apply, the default would copy every pixel (17% of a 12-megapixel
            # photo's decode time on the development machine).
            ImageOps.exif_transpose(image, in_place=True)
            rgb = _to_rgb(image)
            pixels = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
        except RejectedInputError:
            raise
        except Exception as error:  # truncated or corrupt data surfaces as many exception types
            raise _decoder_error(error, f"the {source_format} data is truncated or corrupt") from None
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise RejectedInputError(RejectReason.UNSUPPORTED_MODE, f"decoded to an unexpected shape {pixels.shape}")
    return DecodedImage(pixels=pixels, source_format=source_format, source_mode=source_mode, animated=animated)
