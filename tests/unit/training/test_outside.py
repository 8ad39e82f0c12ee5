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


def test_answers_are_counted_per_kind_with_how_many_were_right() -> None:
    truth = np.array([1, 0, 1, 0, 1], dtype=bool)              # FAKE, REAL, FAKE, REAL, FAKE
    leaning = np.array([1, 0, 0, 1, 1], dtype=bool)            # right, right, wrong, wrong, right
    answered = np.array([True, True, True, True, False])
    assert outside.answer_counts(truth, leaning, answered) == {
        "images": 5, "answered_real": 2, "real_right": 1, "answered_fake": 2, "fake_right": 1, "uncertain": 1}
    assert outside._percent(1, 2) == "50% (1 of 2)" and outside._percent(0, 0) == "no answers"
