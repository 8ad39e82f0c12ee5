"""A battery of malformed and awkward inputs, each with the answer the service owes it.

Used by the handler unit tests (no server) and by the integration test that sends every case
through a real TorchServe, concurrently with valid images so they share dynamic batches.
Valid-but-unusual images expect 200 and a prediction; invalid ones a 4xx JSON error.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np
import yaml
from PIL import Image

from detector.metadata import ModelMetadata
from handlers.settings import HandlerSettings
from ops.torchserve_config import TorchServeConfig
from tests.conftest import REPO, encode, photo

OK = 200


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes
    expect: int                       # HTTP status the service must answer
    content_type: str = "application/octet-stream"
    error_type: str | None = None     # expected "type" of the JSON error (None: not checked / a 200)
    multipart: dict[str, tuple] = field(default_factory=dict)  # requests' files= (instead of body)
    handler_checked: bool = True      # False: TorchServe's frontend answers before the handler sees it


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose header claims ``width`` x ``height`` pixels."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b"")


def _exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    return encode(photo(64, 48, seed=3), "JPEG", quality=90, exif=exif)


def _frames(fmt: str, **params) -> bytes:
    frames = [photo(40, 40, seed=s) for s in range(3)]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], **params)


def _palette_with_transparency() -> bytes:
    image = photo(40, 40, seed=4).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encode(image, "PNG", transparency=0)


def _sixteen_bit_png() -> bytes:
    ramp = (np.arange(48 * 48, dtype=np.uint16).reshape(48, 48) * 28).astype(np.uint16)
    return encode(Image.fromarray(ramp), "PNG")


def _rgba_png() -> bytes:
    image = photo(40, 40, seed=5).convert("RGBA")
    image.putalpha(128)
    return encode(image, "PNG")


def configured_limits() -> tuple[int, int]:
    """(handler max_image_bytes from handlers/model-config.yaml, TorchServe max_request_size from config.properties)."""
    handler = HandlerSettings.from_yaml(yaml.safe_load((REPO / "handlers" / "model-config.yaml").read_text())["handler"],
                                        ModelMetadata.load(REPO / "model"))
    return handler.limits.max_bytes, int(TorchServeConfig.load(REPO / "config.properties").require("max_request_size"))


def build_battery(valid_jpeg: bytes, image_limit: int, request_limit: int) -> list[Case]:
    """The cases; ``valid_jpeg`` is a real CIFAKE test image, ``image_limit`` the handler's max_image_bytes,
    ``request_limit`` TorchServe's max_request_size (above it the frontend answers a bare 413)."""
    jpeg = encode(photo(64, 64, seed=1), "JPEG", quality=90)
    png = encode(photo(64, 64, seed=2), "PNG")
    b64 = base64.b64encode(valid_jpeg).decode()
    rng = np.random.default_rng(0)
    return [
        # --- not images at all -> 400 / 415
        Case("empty body", b"", 400, error_type="EmptyInput"),
        Case("random bytes", rng.bytes(2048), 415, error_type="UnsupportedFormat"),
        Case("zero bytes (64 KiB)", bytes(65536), 415, error_type="UnsupportedFormat"),
        Case("plain text", b"hello, is this real?", 415, "text/plain", error_type="UnsupportedFormat"),
        Case("HTML page", b"<!doctype html><html><body><img src=x></body></html>", 415, "text/html",
             error_type="UnsupportedFormat"),
        Case("SVG image", b"<svg xmlns='http://www.w3.org/2000/svg' width='32' height='32'><rect width='9'/></svg>",
             415, "image/svg+xml", error_type="UnsupportedFormat"),
        Case("PDF document", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", 415, "application/pdf",
             error_type="UnsupportedFormat"),
        Case("zip archive", _zip_bytes(), 415, "application/zip", error_type="UnsupportedFormat"),
        Case("gzip of a JPEG", zlib.compress(jpeg), 415, error_type="UnsupportedFormat"),
        # --- broken images -> 400
        Case("truncated JPEG", jpeg[: len(jpeg) // 3], 400, "image/jpeg", error_type="InvalidImage"),
        Case("truncated PNG", png[: len(png) // 2], 400, "image/png", error_type="InvalidImage"),
        Case("PNG signature only", png[:8], 415, "image/png", error_type="UnsupportedFormat"),
        Case("GIF header only", b"GIF89a", 415, "image/gif", error_type="UnsupportedFormat"),
        Case("JPEG with corrupted scan", jpeg[:400] + bytes(len(jpeg) - 400), 400, "image/jpeg", error_type="InvalidImage"),
        # --- absurd sizes -> 413
        Case("decompression bomb (PNG declaring 30000x30000)", png_declaring(30000, 30000), 413, "image/png",
             error_type="TooLarge"),
        Case("PNG declaring 12000x12000 (over max pixels)", png_declaring(12000, 12000), 413, "image/png",
             error_type="TooLarge"),
        Case("PNG declaring 25000x1 (over max side)", png_declaring(25000, 1), 413, "image/png", error_type="TooLarge"),
        Case("image over the image byte limit", jpeg + bytes(image_limit), 413, "image/jpeg", error_type="TooLarge"),
        Case("body over the request limit", jpeg + bytes(request_limit), 413, "image/jpeg", handler_checked=False),
        # --- JSON and multipart mistakes -> 400
        Case("base64 JSON with bad base64", b'{"image": "not*base64!"}', 400, "application/json", error_type="BadBase64"),
        Case("JSON without an image key", b'{"picture": "abc"}', 400, "application/json", error_type="BadJson"),
        Case("JSON array", b"[1, 2, 3]", 400, "application/json", error_type="BadJson"),
        Case("JSON with a number as image", b'{"image": 42}', 400, "application/json", error_type="BadJson"),
        Case("base64 JSON of text", json.dumps({"image": base64.b64encode(b"just text").decode()}).encode(), 415,
             "application/json", error_type="UnsupportedFormat"),
        Case("multipart without a file", b"", 400, multipart={"comment": (None, "no file here")},
             error_type="MissingInput"),
        # --- valid but unusual images -> 200
        Case("1x1 PNG", encode(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), OK, "image/png"),
        Case("10000x1 PNG", encode(Image.new("RGB", (10000, 1), (10, 200, 10)), "PNG"), OK, "image/png"),
        Case("grayscale JPEG", encode(photo(48, 48, seed=6).convert("L"), "JPEG"), OK, "image/jpeg"),
        Case("palette PNG with transparency", _palette_with_transparency(), OK, "image/png"),
        Case("RGBA PNG", _rgba_png(), OK, "image/png"),
        Case("CMYK JPEG", encode(photo(48, 48, seed=7).convert("CMYK"), "JPEG"), OK, "image/jpeg"),
        Case("16-bit grayscale PNG", _sixteen_bit_png(), OK, "image/png"),
        Case("1-bit PNG", encode(photo(48, 48, seed=8).convert("1"), "PNG"), OK, "image/png"),
        Case("animated GIF (first frame used)", _frames("GIF", duration=100, loop=0), OK, "image/gif"),
        Case("multi-page TIFF (first page used)", _frames("TIFF"), OK, "image/tiff"),
        Case("EXIF-rotated JPEG", _exif_rotated_jpeg(), OK, "image/jpeg"),
        Case("progressive JPEG", encode(photo(64, 64, seed=9), "JPEG", progressive=True), OK, "image/jpeg"),
        Case("WebP", encode(photo(48, 48, seed=10), "WEBP"), OK, "image/webp"),
        Case("BMP", encode(photo(48, 48, seed=11), "BMP"), OK, "image/bmp"),
        Case("JPEG with trailing garbage", valid_jpeg + b"\0garbage" * 64, OK, "image/jpeg"),
        Case("JPEG sent as text/plain", valid_jpeg, OK, "text/plain"),
        Case("JPEG sent as application/json", valid_jpeg, OK, "application/json"),
        Case("PNG labelled image/jpeg", png, OK, "image/jpeg"),
        Case("base64 JSON", json.dumps({"image": b64}).encode(), OK, "application/json"),
        Case("base64 data URL JSON", json.dumps({"data": "data:image/jpeg;base64," + b64}).encode(), OK,
             "application/json"),
        Case("multipart file", b"", OK, multipart={"data": ("x.jpg", valid_jpeg, "image/jpeg")}),
    ]


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model.py", "print('hi')\n")
    return buffer.getvalue()


def as_torchserve_request(case: Case) -> dict:
    """The dict TorchServe's Python worker hands the handler for this body (JSON and text bodies decoded)."""
    value: object = case.body
    if case.content_type == "application/json":
        try:
            value = json.loads(case.body.decode())
        except ValueError:  # UnicodeDecodeError is a ValueError too
            pass
    elif case.content_type.startswith("text"):
        try:
            value = case.body.decode()
        except UnicodeDecodeError:
            pass
    return {"body": value}
