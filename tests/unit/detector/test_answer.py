"""The served answer and its operating threshold: fitted to a coverage, applied the same way everywhere."""

from __future__ import annotations

import numpy as np

from detector.answer import UNCERTAIN, answer, answered, fit_min_confidence, selective_figures
from training.metrics import fit_abstention


def two_class(p_fake: list[float]) -> np.ndarray:
    fake = np.array(p_fake)
    return np.stack([1 - fake, fake], axis=1)


def test_answer_abstains_only_below_the_threshold() -> None:
    classes = ("REAL", "FAKE")
    assert answer(np.array([0.2, 0.8]), classes, 0.8) == {"label": "FAKE"}
    below = answer(np.array([0.7, 0.3]), classes, 0.8)
    assert below["label"] == UNCERTAIN and below["abstained"]["leaning"] == "REAL"
    assert below["abstained"]["confidence"] == 0.7 and below["abstained"]["threshold"] == 0.8
    assert answer(np.array([0.5, 0.5]), classes, 0.0)["label"] in classes   # 0 never abstains


def test_fitted_threshold_answers_the_requested_coverage_and_no_more_abstains() -> None:
    rng = np.random.default_rng(0)
    probabilities = two_class(list(rng.uniform(0, 1, 1000)))
    for coverage in (0.5, 0.9, 0.975):
        threshold = fit_min_confidence(probabilities, coverage)
        kept = answered(probabilities, threshold)
        assert coverage <= kept.mean() <= coverage + 0.002
        assert probabilities.max(axis=1)[~kept].max(initial=0) < threshold


def test_abstaining_on_the_least_confident_raises_accuracy_on_the_answered() -> None:
    probabilities = two_class([0.99, 0.95, 0.6, 0.45, 0.02, 0.3])
    labels = np.array([1, 1, 0, 1, 0, 0])      # the two least confident answers (0.6, 0.45) are wrong
    everything = selective_figures(probabilities, labels, 0.0)
    assert everything["coverage"] == 1.0 and everything["accuracy_answered"] == 4 / 6
    fit = fit_abstention(probabilities, labels, coverage=4 / 6)
    assert fit["fitted_on"] == "validation" and fit["min_confidence"] == 0.7
    assert fit["coverage"] == 4 / 6 and fit["accuracy_answered"] == 1.0
    assert fit_abstention(probabilities, labels, coverage=1.0)["min_confidence"] == 0.0
