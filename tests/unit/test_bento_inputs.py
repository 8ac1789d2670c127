"""The service's input decoder: every unusual image becomes RGB pixels or a typed rejection, never anything else."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from modelyard.bento.inputs import (
    ALLOWED_FORMATS,
    DecodedImage,
    InputLimits,
    RejectedInputError,
    RejectReason,
    decode_base64,
    decode_image,
)

pytestmark = pytest.mark.unit

LIMITS = InputLimits()


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def crafted_png(width: int, height: int, extra: bytes = b"") -> bytes:
    """A grey PNG that declares width x height but carries only ten rows of zeros: what a bomb looks like."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (width + 1) * min(height, 10))
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + extra + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")
    )


def rejection(data: bytes, limits: InputLimits = LIMITS) -> RejectedInputError:
    with pytest.raises(RejectedInputError) as caught:
        decode_image(data, limits)
    return caught.value


def gradient(width: int = 40, height: int = 30) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, axis=0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, axis=1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=2), mode="RGB")


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "WEBP"])
def test_lossless_formats_decode_to_the_exact_pixels(fmt: str) -> None:
    original = gradient()
    options = {"lossless": True} if fmt == "WEBP" else {}
    decoded = decode_image(encode(original, fmt, **options), LIMITS)
    assert decoded.source_format == fmt
    assert decoded.pixels.dtype == np.uint8
    assert decoded.pixels.shape == (30, 40, 3)
    assert decoded.pixels.flags.c_contiguous
    np.testing.assert_array_equal(decoded.pixels, np.asarray(original))


def test_jpeg_decodes_close_to_the_original() -> None:
    original = gradient()
    decoded = decode_image(encode(original, "JPEG", quality=95), LIMITS)
    assert decoded.pixels.shape == (30, 40, 3)
    assert np.abs(decoded.pixels.astype(int) - np.asarray(original).astype(int)).mean() < 3


def test_cmyk_jpeg_becomes_rgb() -> None:
    cyan = Image.new("CMYK", (16, 16), (255, 0, 0, 0))
    decoded = decode_image(encode(cyan, "JPEG", quality=95), LIMITS)
    assert decoded.source_mode == "CMYK"
    red, green, blue = decoded.pixels[8, 8].tolist()
    assert red < 30
    assert min(green, blue) > 225


def test_sixteen_bit_greyscale_is_scaled_not_clipped() -> None:
    levels = np.array([[0, 256, 32768, 65535]], dtype=np.uint16)
    decoded = decode_image(encode(Image.fromarray(levels), "PNG"), LIMITS)
    assert decoded.source_mode.startswith("I;16")
    # Pillow's plain conversion would give [0, 255, 255, 255].
    assert decoded.pixels[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (decoded.pixels[..., 0] == decoded.pixels[..., 2]).all()


def test_alpha_is_composited_on_white() -> None:
    pixels = np.zeros((2, 2, 4), dtype=np.uint8)
    pixels[0, 0] = (10, 20, 30, 255)  # opaque: kept
    pixels[0, 1] = (10, 20, 30, 0)  # transparent: white, whatever colour it hides
    pixels[1, 0] = (0, 0, 0, 128)  # half: half-way to white
    decoded = decode_image(encode(Image.fromarray(pixels, mode="RGBA"), "PNG"), LIMITS)
    assert decoded.pixels[0, 0].tolist() == [10, 20, 30]
    assert decoded.pixels[0, 1].tolist() == [255, 255, 255]
    assert all(abs(channel - 127) <= 1 for channel in decoded.pixels[1, 0].tolist())


def test_greyscale_with_alpha_and_bilevel_images_become_rgb() -> None:
    grey_alpha = Image.fromarray(np.array([[[50, 255], [50, 0]]], dtype=np.uint8), mode="LA")
    decoded = decode_image(encode(grey_alpha, "PNG"), LIMITS)
    assert decoded.pixels[0].tolist() == [[50, 50, 50], [255, 255, 255]]
    bilevel = Image.new("1", (3, 3), 1)
    assert decode_image(encode(bilevel, "PNG"), LIMITS).pixels.min() == 255


def test_palette_images_keep_their_colours_and_transparency() -> None:
    palette = Image.new("P", (4, 1))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    decoded = decode_image(encode(palette, "PNG"), LIMITS)
    assert decoded.pixels[0, :2].tolist() == [[255, 0, 0], [0, 0, 255]]
    transparent = decode_image(encode(palette, "PNG", transparency=1), LIMITS)
    assert transparent.pixels[0, :2].tolist() == [[255, 0, 0], [255, 255, 255]]


def test_an_animation_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    decoded = decode_image(data, LIMITS)
    assert decoded.animated
    assert decoded.pixels[4, 4].tolist() == [255, 0, 0]


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    decoded = decode_image(encode(gradient(40, 30), "JPEG", exif=exif.tobytes()), LIMITS)
    assert decoded.pixels.shape == (40, 30, 3)


@pytest.mark.parametrize(
    ("data", "reason", "message"),
    [
        (b"", RejectReason.EMPTY, "empty (0 bytes)"),
        (b"hello, this is text and not a picture", RejectReason.NOT_AN_IMAGE, "not an image"),
        (b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", RejectReason.NOT_AN_IMAGE, "supported format"),
    ],
    ids=["zero-bytes", "text", "pdf"],
)
def test_things_that_are_not_images(data: bytes, reason: RejectReason, message: str) -> None:
    error = rejection(data)
    assert error.reason is reason
    assert message in error.message


def test_a_real_image_in_a_format_outside_the_allow_list_is_refused() -> None:
    assert "PPM" not in ALLOWED_FORMATS
    error = rejection(encode(gradient(), "PPM"))
    assert error.reason is RejectReason.NOT_AN_IMAGE


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_truncated_files_are_corrupt(fmt: str) -> None:
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = encode(noise, fmt)
    error = rejection(data[: len(data) // 2])
    assert error.reason is RejectReason.CORRUPT
    assert "truncated or corrupt" in error.message or "unreadable" in error.message


def test_a_damaged_png_header_is_corrupt() -> None:
    data = bytearray(encode(gradient(), "PNG"))
    data[20] ^= 0xFF  # inside IHDR: its CRC no longer matches
    error = rejection(bytes(data))
    assert error.reason is RejectReason.CORRUPT


@pytest.mark.parametrize(
    ("side", "message"),
    [
        (5_000, "(195312:1)"),  # over our limit: refused before a single row is inflated
        (10_000, "exceeds limit"),  # over Pillow's warning threshold: its warning is an error here
        (30_000, "exceeds limit"),  # over Pillow's hard limit: it refuses to open it
    ],
)
def test_decompression_bombs_are_refused_before_decoding(side: int, message: str) -> None:
    error = rejection(crafted_png(side, side))
    assert error.reason is RejectReason.DECOMPRESSION_BOMB
    assert message in error.message


def test_a_compressed_text_chunk_bomb_is_refused() -> None:
    chunk = png_chunk(b"zTXt", b"comment\0\0" + zlib.compress(b"a" * 8 * 1024 * 1024))
    error = rejection(crafted_png(10, 10, extra=chunk))
    assert error.reason is RejectReason.DECOMPRESSION_BOMB
    assert "Decompressed" in error.message


def test_a_big_real_image_is_too_many_pixels_not_a_bomb() -> None:
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 256, (120, 100, 3), dtype=np.uint8))
    error = rejection(encode(noise, "PNG"), InputLimits(max_image_pixels=10_000))
    assert error.reason is RejectReason.TOO_MANY_PIXELS
    assert "100x120 = 12000 pixels; the limit is 10000" in error.message
    assert decode_image(encode(noise, "PNG"), InputLimits(max_image_pixels=12_000)).pixels.shape == (120, 100, 3)


def test_too_many_bytes_is_refused_before_decoding() -> None:
    data = encode(gradient(), "PNG")
    error = rejection(data, InputLimits(max_image_bytes=len(data) - 1))
    assert error.reason is RejectReason.TOO_MANY_BYTES
    assert error.message == f"the image is {len(data)} bytes; the limit is {len(data) - 1} bytes"
    assert decode_image(data, InputLimits(max_image_bytes=len(data))).pixels.shape == (30, 40, 3)


def test_floating_point_images_are_refused_with_the_reason() -> None:
    error = rejection(encode(Image.new("F", (4, 4), 0.5), "TIFF"))
    assert error.reason is RejectReason.UNSUPPORTED_MODE
    assert "floating-point" in error.message


def test_base64_forms_that_clients_send() -> None:
    data = encode(gradient(), "PNG")
    text = base64.b64encode(data).decode()
    assert decode_base64(text, LIMITS) == data
    assert decode_base64(f"data:image/png;base64,{text}", LIMITS) == data
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    assert decode_base64(wrapped, LIMITS) == data


@pytest.mark.parametrize(
    ("text", "reason", "message"),
    [
        ("", RejectReason.EMPTY, "empty"),
        ("data:image/png;base64,", RejectReason.EMPTY, "empty"),
        ("not*base64!", RejectReason.BAD_BASE64, "not valid base64"),
        ("abc", RejectReason.BAD_BASE64, "not valid base64"),
        ("ÿÿÿÿ", RejectReason.BAD_BASE64, "non-ASCII"),
        ("QUJD" * 100, RejectReason.TOO_MANY_BYTES, "the limit is 100 bytes"),
    ],
)
def test_bad_base64(text: str, reason: RejectReason, message: str) -> None:
    with pytest.raises(RejectedInputError) as caught:
        decode_base64(text, InputLimits(max_image_bytes=100))
    assert caught.value.reason is reason
    assert message in caught.value.message


def test_limits_are_positive_and_within_pillows_hard_limit() -> None:
    with pytest.raises(ValueError, match="max_image_bytes must be at least 1"):
        InputLimits(max_image_bytes=0)
    with pytest.raises(ValueError, match="Pillow's hard limit"):
        InputLimits(max_image_pixels=10**10)


def outcome(data: bytes) -> DecodedImage | RejectedInputError:
    """The decoded image, or the rejection; any other exception escapes and fails the test."""
    try:
        return decode_image(data, LIMITS)
    except RejectedInputError as error:
        return error


def assert_well_formed(result: DecodedImage | RejectedInputError) -> None:
    if isinstance(result, RejectedInputError):
        assert result.reason in set(RejectReason)
        assert result.message
    else:
        assert result.pixels.dtype == np.uint8
        assert result.pixels.ndim == 3
        assert result.pixels.shape[2] == 3


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_decode_or_are_rejected(data: bytes) -> None:
    assert_well_formed(outcome(data))


VALID_FILES = [encode(gradient(12, 9), fmt) for fmt in ALLOWED_FORMATS]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(VALID_FILES),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, 10_000),
)
def test_damaged_real_files_decode_or_are_rejected(base: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(base)
    for position, value in flips:
        data[position % len(data)] = value
    assert_well_formed(outcome(bytes(data[: max(cut, 1)])))
