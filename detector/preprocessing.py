"""Image decoding and resolution alignment shared by training, evaluation and serving.

Any common image format is decoded with Pillow, EXIF orientation is applied,
transparency is flattened onto white, and the largest centred square is
downsampled with an antialiasing filter to the model's input size (32x32 for
CIFAKE).  The 32->224 upsampling and normalisation happen inside the network
(see ``detector.model``) so that they run on the device, batched.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}


class InvalidImageError(ValueError):
    """The input cannot be turned into an image the model accepts (a client error)."""

    def __init__(self, message: str, status: int = 400, kind: str = "InvalidImage") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds that protect the server from hostile or absurd images."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 100_000_000
    max_side: int = 20_000


def decode_image(data: bytes, limits: DecodeLimits = DecodeLimits(), draft_size: int | None = None) -> Image.Image:
    """Decode bytes into an RGB image, enforcing ``limits`` before pixels are allocated.

    ``draft_size`` lets JPEG decoding scale down in the DCT domain (up to 8x) while
    keeping at least that many pixels per side: most of the cost of a 12 MP photo vanishes.
    """
    if not data:
        raise InvalidImageError("empty body: send the image bytes", kind="EmptyInput")
    if len(data) > limits.max_bytes:
        raise InvalidImageError(
            f"image is {len(data)} bytes, above the limit of {limits.max_bytes}", status=413, kind="TooLarge"
        )
    try:
        with warnings.catch_warnings():  # Pillow's bomb warning is noise here: the limits below decide
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise InvalidImageError(f"image declares too many pixels: {exc}", status=413, kind="TooLarge") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImageError("not a recognised image format", status=415, kind="UnsupportedFormat") from exc
    except (OSError, ValueError) as exc:
        raise InvalidImageError(f"cannot read image header: {exc}") from exc
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImageError("image has no pixels")
    if width * height > limits.max_pixels or max(width, height) > limits.max_side:
        raise InvalidImageError(
            f"image is {width}x{height}; limits are {limits.max_pixels} pixels and {limits.max_side} px per side",
            status=413,
            kind="TooLarge",
        )
    try:
        if draft_size is not None and image.format == "JPEG":
            image.draft("RGB", (draft_size, draft_size))
        image.seek(0)  # first frame of animations and multi-page files
        image = ImageOps.exif_transpose(image)
        return _to_rgb(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InvalidImageError(f"corrupt or truncated image: {exc}") from exc


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited onto white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image) * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def align_image(image: Image.Image, size: int, filter_name: str) -> np.ndarray:
    """Centre-crop to a square and downsample with an antialiasing filter: HxWx3 uint8."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = image.crop((left, top, left + side, top + side)) if width != height else image
    if square.size != (size, size):
        square = square.resize((size, size), FILTERS[filter_name])
    return np.asarray(square, dtype=np.uint8)


def load_aligned(
    data: bytes, size: int, filter_name: str, limits: DecodeLimits = DecodeLimits()
) -> np.ndarray:
    """Bytes -> ``size`` x ``size`` x 3 uint8 array: the one preprocessing path of the project."""
    return align_image(decode_image(data, limits, draft_size=size), size, filter_name)
