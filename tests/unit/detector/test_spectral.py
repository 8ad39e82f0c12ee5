"""The frequency second opinion: features that see high frequencies and a fit that separates."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from detector.spectral import RADIAL_BINS, SpectralScore, fit_spectral_score, radial_spectrum


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


def test_fit_separates_sharp_from_blurred_and_round_trips(tmp_path) -> None:
    images = np.concatenate([noise_images(100, 0, 1), noise_images(100, 0.8, 2)])
    labels = np.array([1] * 100 + [0] * 100)
    score = fit_spectral_score(images, labels)
    held_out = np.concatenate([noise_images(20, 0, 3), noise_images(20, 0.8, 4)])
    assert ((score.p_fake(held_out) > 0.5) == np.array([True] * 20 + [False] * 20)).mean() == 1.0
    score.save(tmp_path)
    assert np.allclose(SpectralScore.load(tmp_path).p_fake(held_out), score.p_fake(held_out))
