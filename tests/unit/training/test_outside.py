"""The outside-CIFAKE report's folder reading and risk-coverage arithmetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import outside_folder
from training import outside


def test_folder_gives_each_image_its_truth_and_generator(tmp_path: Path) -> None:
    images = outside.read_outside_folder(outside_folder(tmp_path))
    assert [(image.path.name, image.truth, image.generator) for image in images] == [
        ("0.jpg", "REAL", "camera"), ("1.jpg", "REAL", "camera"), ("2.jpg", "REAL", "camera"),
        ("0.jpg", "FAKE", "SDXL"), ("1.jpg", "FAKE", "unknown generator")]
    with pytest.raises(FileNotFoundError, match="real"):
        outside.read_outside_folder(tmp_path / "real")


def test_risk_coverage_answers_the_most_confident_first() -> None:
    truth = np.array([1, 0, 1, 0], dtype=bool)
    p_fake = np.array([0.99, 0.95, 0.40, 0.20])   # confidences 0.99, 0.95, 0.60, 0.80: the 2nd and 3rd are wrong
    probabilities = np.stack([1 - p_fake, p_fake], axis=1)
    coverage, risk = outside.risk_coverage(truth, probabilities)
    assert coverage.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert risk.tolist() == [0.0, 0.5, 1 / 3, 0.5]
    assert outside.risk_at(coverage, risk, 0.5) == 0.5 and outside.risk_at(coverage, risk, 1.0) == 0.5
    counts = outside.answer_counts(truth, probabilities, min_confidence=0.0)
    assert counts == {"images": 4, "answered_real": 2, "answered_fake": 2, "uncertain": 0, "wrong": 0.5}
    cautious = outside.answer_counts(truth, probabilities, min_confidence=0.9)   # the 0.60 and 0.80 answers abstain
    assert cautious == {"images": 4, "answered_real": 0, "answered_fake": 2, "uncertain": 2, "wrong": 0.25}
