"""A frequency-domain second opinion: a logistic score on the image's radial power spectrum.

Generated images carry a spectral fingerprint of the up-sampling layers that produced them
(Durall et al., CVPR 2020; Frank et al., ICML 2020): their power spectrum departs from a natural
photograph's at high frequencies. The score looks only at that: the azimuthally averaged log power
spectrum of the aligned 32×32 input (what the CNN sees), in ``RADIAL_BINS`` rings, per luminance and
two chroma channels. It is reported beside the CNN's probability and never changes the label.
Its parameters (feature scaling, weights, measured accuracy) live in ``spectral.json`` beside the weights.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SPECTRAL_FILENAME = "spectral.json"
RADIAL_BINS = 16
# RGB -> luminance and two opponent chroma axes (YCbCr without offsets)
COLOUR_AXES = np.array([[0.299, 0.587, 0.114], [-0.1687, -0.3313, 0.5], [0.5, -0.4187, -0.0813]], dtype=np.float32)


@functools.cache
def _ring_averages(size: int) -> np.ndarray:
    """(size*size, RADIAL_BINS) matrix that averages a flattened spectrum over each frequency ring
    (cached, read-only: the server scores every batch with it)."""
    frequencies = np.fft.fftfreq(size)
    radius = np.hypot(*np.meshgrid(frequencies, frequencies, indexing="ij")).ravel()   # 0 .. 0.707 cycles/pixel
    rings = np.minimum((radius / radius.max() * RADIAL_BINS).astype(int), RADIAL_BINS - 1)
    one_hot = np.eye(RADIAL_BINS, dtype=np.float32)[rings]
    averages = one_hot / one_hot.sum(axis=0)
    averages.flags.writeable = False
    return averages


def radial_spectrum(images: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 3 * RADIAL_BINS) mean log power per frequency ring and colour axis."""
    averages = _ring_averages(images.shape[1])
    features = []
    for start in range(0, len(images), chunk):
        pixels = np.einsum("nhwc,dc->ndhw", images[start:start + chunk].astype(np.float32) / 255.0, COLOUR_AXES)
        pixels -= pixels.mean(axis=(2, 3), keepdims=True)
        spectrum = np.fft.fft2(pixels)                                                      # over (H, W)
        log_power = np.log(spectrum.real ** 2 + spectrum.imag ** 2 + 1e-8).astype(np.float32)
        features.append((log_power.reshape(len(pixels), 3, -1) @ averages).reshape(len(pixels), -1))
    return np.concatenate(features) if features else np.empty((0, 3 * RADIAL_BINS), np.float32)


@dataclass(frozen=True)
class SpectralScore:
    """Logistic regression on standardised radial-spectrum features: P(FAKE)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    metrics: dict[str, Any] = field(default_factory=dict)

    def p_fake(self, images: np.ndarray) -> np.ndarray:
        """P(FAKE) for (N, H, W, 3) uint8 aligned images."""
        z = (radial_spectrum(images) - np.asarray(self.mean)) / np.asarray(self.std)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.weights) + self.bias)))

    def save(self, directory: Path) -> Path:
        path = Path(directory) / SPECTRAL_FILENAME
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: Path) -> "SpectralScore":
        raw = json.loads((Path(directory) / SPECTRAL_FILENAME).read_text())
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
