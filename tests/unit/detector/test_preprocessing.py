from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from detector.preprocessing import DecodeLimits, InvalidImageError, decode_image, load_aligned
from tests.conftest import encode, photo

SIZE = 32


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"])
def test_every_common_format_becomes_a_32x32_rgb_array(fmt: str) -> None:
    array = load_aligned(encode(photo(96, 64), fmt), SIZE, "bicubic")
    assert array.shape == (SIZE, SIZE, 3) and array.dtype == np.uint8
    assert array.std() > 5  # real content, not a blank


def test_lossless_formats_agree_exactly() -> None:
    image = photo(64, 64, seed=3)
    arrays = [load_aligned(encode(image, fmt), SIZE, "bicubic") for fmt in ("PNG", "BMP", "TIFF")]
    assert all(np.array_equal(arrays[0], a) for a in arrays[1:])


def test_32x32_input_passes_through_unchanged() -> None:
    image = photo(32, 32, seed=4)
    assert np.array_equal(load_aligned(encode(image, "PNG"), SIZE, "bicubic"), np.asarray(image))


def test_exif_orientation_is_applied() -> None:
    upright = np.zeros((40, 80, 3), dtype=np.uint8)
    upright[:, :40] = (255, 0, 0)  # red left half, blue right half
    upright[:, 40:] = (0, 0, 255)
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # camera stored it rotated
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": undoes the counter-clockwise ROTATE_90
    decoded = np.asarray(decode_image(encode(stored, "JPEG", exif=exif, quality=95)))
    assert decoded.shape == (40, 80, 3)
    assert decoded[20, 10, 0] > 200 and decoded[20, 70, 2] > 200


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16", "1"])
def test_any_mode_converts_to_rgb(mode: str) -> None:
    image = photo(48, 48).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image).astype(np.uint16) * 257)
    fmt = {"CMYK": "JPEG", "1": "BMP"}.get(mode, "PNG")
    array = load_aligned(encode(image, fmt), SIZE, "bicubic")
    assert array.shape == (SIZE, SIZE, 3)


def test_transparency_is_flattened_onto_white() -> None:
    transparent = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    assert load_aligned(encode(transparent, "PNG"), SIZE, "bicubic").min() == 255


def test_sixteen_bit_png_keeps_its_brightness() -> None:
    grey = Image.fromarray(np.full((32, 32), 32768, dtype=np.uint16))
    assert grey.mode.startswith("I;16")
    assert abs(int(load_aligned(encode(grey, "PNG"), SIZE, "bicubic").mean()) - 128) <= 1


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    array = load_aligned(buffer.getvalue(), SIZE, "bicubic")
    assert array[..., 0].mean() > 200 and array[..., 2].mean() < 50


def test_large_jpeg_draft_decoding_matches_full_decoding() -> None:
    """DCT-domain downscaling must not change what the model sees in any meaningful way."""
    data = encode(photo(4000, 3000, seed=5), "JPEG", quality=90)
    drafted = load_aligned(data, SIZE, "bicubic").astype(int)
    full = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").crop((500, 0, 3500, 3000))
                      .resize((SIZE, SIZE), Image.Resampling.BICUBIC)).astype(int)
    assert np.abs(drafted - full).mean() < 3


def test_non_square_images_are_centre_cropped() -> None:
    wide = np.zeros((32, 96, 3), dtype=np.uint8)
    wide[:, 32:64] = 255  # only the centre square is white
    assert load_aligned(encode(Image.fromarray(wide), "PNG"), SIZE, "bicubic").min() > 240


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("data", "status", "kind"),
    [
        (b"", 400, "EmptyInput"),
        (b"hello, this is not an image", 415, "UnsupportedFormat"),
        (_png_header_only(30000, 30000), 413, "TooLarge"),
    ],
)
def test_bad_inputs_raise_typed_errors(data: bytes, status: int, kind: str) -> None:
    with pytest.raises(InvalidImageError) as caught:
        load_aligned(data, SIZE, "bicubic")
    assert (caught.value.status, caught.value.kind) == (status, kind)


def test_truncated_jpeg_is_a_client_error() -> None:
    data = encode(photo(256, 256), "JPEG")
    with pytest.raises(InvalidImageError) as caught:
        load_aligned(data[: len(data) // 3], SIZE, "bicubic")
    assert caught.value.status == 400


def test_byte_and_side_limits() -> None:
    data = encode(photo(300, 20), "PNG")
    with pytest.raises(InvalidImageError, match="above the limit"):
        decode_image(data, DecodeLimits(max_bytes=100))
    with pytest.raises(InvalidImageError, match="per side"):
        decode_image(data, DecodeLimits(max_side=200))
