"""The shipped frequency score does on CIFAKE test images what its report says."""

from __future__ import annotations

import numpy as np

from detector.preprocessing import load_aligned
from detector.spectral import SpectralScore
from tests.conftest import MODEL_DIR


def test_shipped_score_does_what_its_report_says(cifake_images) -> None:
    score = SpectralScore.load(MODEL_DIR)
    assert 0.7 <= score.metrics["test_accuracy"] <= 0.9 and score.metrics["test_images"] == 20_000
    images = np.stack([load_aligned(data, 32, "bicubic") for _, data in cifake_images])
    truth = np.array([name == "FAKE" for name, _ in cifake_images])
    p_fake = score.p_fake(images)
    assert ((p_fake >= 0) & (p_fake <= 1)).all()
    assert ((p_fake > 0.5) == truth).mean() >= 0.6   # 40 images: a loose check of the recorded ~80 %
