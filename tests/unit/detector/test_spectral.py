"""The frequency second opinion: features that see high frequencies and a fit that separates."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from detector.spectral import RADIAL_BINS, radial_spectrum


def noise_images(count: int, blur: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    if blur:
        images = np.stack([np.asarray(Image.fromarray(i).filter(ImageFilter.GaussianBlur(blur))) for i in images])
    return images


def test_blurring_removes_high_frequency_power_only() -> None:
    sharp, blurred = radial_spectrum(noise_images(8, 0, 0)), radial_spectrum(noise_images(8, 1.0, 0))
    assert sharp.shape == (8, 3 * RADIAL_BINS)
    luminance = slice(0, RADIAL_BINS)
    assert (sharp[:, luminance][:, -4:] - blurred[:, luminance][:, -4:]).min() > 1.0      # highest rings lose power
    assert abs(sharp[:, luminance][:, 1].mean() - blurred[:, luminance][:, 1].mean()) < 1.0  # low rings barely change
