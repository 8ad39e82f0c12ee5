"""The self-check's reference file and its tolerance, without artifacts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detector.selfcheck import SelfCheck, probability_agreement, within_quantisation_tolerance


def test_agreement_figures_and_the_quantisation_bar() -> None:
    reference = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    candidate = np.array([[0.9, 0.1], [0.3, 0.7], [0.4, 0.6], [0.5, 0.5]])
    agreement = probability_agreement(reference, candidate)
    assert agreement["max_abs_delta_probability"] == pytest.approx(0.2)
    assert agreement["mean_abs_delta_probability"] == pytest.approx(0.075)
    assert agreement["label_agreement"] == pytest.approx(0.75)
    assert not within_quantisation_tolerance(agreement)
    assert within_quantisation_tolerance(probability_agreement(reference, reference))
    near = probability_agreement(reference, reference + np.array([0.004, -0.004]))   # rounding, not drift
    assert within_quantisation_tolerance(near) and not within_quantisation_tolerance(near, max_mean_delta=0.003)


def test_the_reference_file_round_trips_without_pickle(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    check = SelfCheck(images, np.full((4, 2), 0.5, dtype=np.float32), max_mean_delta=0.01, min_label_agreement=0.9)
    loaded = SelfCheck.load(Path(check.save(tmp_path)).parent)
    assert np.array_equal(loaded.images, images) and np.array_equal(loaded.probabilities, check.probabilities)
    assert (loaded.max_mean_delta, loaded.min_label_agreement) == (0.01, 0.9)
