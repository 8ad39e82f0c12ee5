"""Property-based fuzzing of the decode -> align path (hypothesis): whatever the bytes, the only
exception that escapes is the typed ``InvalidImageError`` (a 4xx), and no input hangs."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from detector.preprocessing import DecodeLimits, InvalidImageError, load_aligned
from tests.conftest import encode, photo

LIMITS = DecodeLimits(max_bytes=1 << 20, max_pixels=4_000_000, max_side=4096)
# Example counts come from the hypothesis profile (tests/conftest.py): 300 per test, fixed seed, in CI;
# `make fuzz` runs the "long" profile (20,000 random examples per test). No per-example deadline: wall time
# depends on what else the machine runs; the decode limits (and pytest-timeout) bound the work instead.
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _seeds() -> list[bytes]:
    image = photo(48, 40, seed=1)
    animated = io.BytesIO()
    image.save(animated, "GIF", save_all=True, append_images=[photo(48, 40, seed=2)])
    return [encode(image, "JPEG", quality=85), encode(image, "JPEG", progressive=True), encode(image, "PNG"),
            encode(image.convert("P"), "PNG", transparency=0), encode(image, "WEBP"), encode(image, "BMP"),
            encode(image, "TIFF"), encode(image.convert("CMYK"), "JPEG"), animated.getvalue(),
            encode(image, "ICO"), encode(image.convert("L"), "PPM")]


SEEDS = _seeds()


def _decode_or_typed_error(data: bytes) -> int:
    """The HTTP status the service would answer: 200 with a 32x32 image, or the typed error's."""
    try:
        aligned = load_aligned(data, 32, "bicubic", LIMITS)
    except InvalidImageError as error:
        assert error.status in (400, 413, 415) and str(error)
        return error.status
    assert aligned.shape == (32, 32, 3) and aligned.dtype == np.uint8
    return 200


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(data: bytes) -> None:
    _decode_or_typed_error(data)


@FUZZ
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                                      min_size=1, max_size=12))
def test_valid_images_with_corrupted_bytes(seed: bytes, edits: list[tuple[float, int]]) -> None:
    data = bytearray(seed)
    for where, value in edits:
        data[int(where * len(data))] = value
    _decode_or_typed_error(bytes(data))


@FUZZ
@given(st.sampled_from(SEEDS), st.floats(0, 1), st.binary(max_size=64))
def test_valid_images_truncated_or_extended(seed: bytes, keep: float, tail: bytes) -> None:
    _decode_or_typed_error(seed[: int(keep * len(seed))] + tail)


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "BMP", "TIFF"])
@FUZZ
@given(width=st.integers(1, 70000), height=st.integers(1, 70000))
def test_declared_sizes_are_bounded_before_decoding(fmt: str, width: int, height: int) -> None:
    """Headers that declare huge sizes are refused by the limits, not by running out of memory."""
    data = bytearray(encode(Image.new("RGB", (7, 5)), fmt))
    if fmt == "GIF":
        width, height = max(width % 65536, 1), max(height % 65536, 1)
    status = _decode_or_typed_error(bytes(_rewrite_size(fmt, data, width, height)))
    if width * height > LIMITS.max_pixels or max(width, height) > LIMITS.max_side:
        assert status == 413


def _rewrite_size(fmt: str, data: bytearray, width: int, height: int) -> bytearray:
    if fmt == "PNG":  # IHDR data at byte 16, its CRC recomputed (Pillow rejects a stale one)
        data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
        data[29:33] = (zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF).to_bytes(4, "big")
    elif fmt == "GIF":  # logical screen and first image descriptor are 16-bit
        data[6:10] = width.to_bytes(2, "little") + height.to_bytes(2, "little")
    elif fmt == "BMP":
        data[18:26] = width.to_bytes(4, "little") + height.to_bytes(4, "little")
    else:  # TIFF (little-endian, as Pillow writes it): ImageWidth/ImageLength entries of the first IFD
        offset = int.from_bytes(data[4:8], "little")
        for entry in range(int.from_bytes(data[offset:offset + 2], "little")):
            start = offset + 2 + 12 * entry
            tag = int.from_bytes(data[start:start + 2], "little")
            if tag in (256, 257):  # rewritten as LONG, count 1
                value = width if tag == 256 else height
                data[start + 2:start + 12] = (4).to_bytes(2, "little") + (1).to_bytes(4, "little") + value.to_bytes(4, "little")
    return data
