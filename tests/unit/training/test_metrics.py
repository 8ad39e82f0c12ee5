from __future__ import annotations

import numpy as np
import pytest
import torch

from training.metrics import (CheckScores, answered, fit_operating_point, classification_report, confusion_matrix, expected_calibration_error, fit_abstention,
                              fit_min_confidence, fit_temperature, roc_curve, selective_figures)


def test_roc_auc_equals_the_pairwise_ranking_probability() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounded: many ties
    fpr, tpr = roc_curve(labels, scores)
    positives, negatives = scores[labels == 1], scores[labels == 0]
    pairwise = ((positives[:, None] > negatives[None, :]).sum() + 0.5 * (positives[:, None] == negatives[None, :]).sum())
    assert np.trapezoid(tpr, fpr) == pytest.approx(pairwise / (len(positives) * len(negatives)), abs=1e-12)


def test_confusion_matrix_counts() -> None:
    assert confusion_matrix(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0]), 2).tolist() == [[1, 1], [1, 2]]


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_overconfident() -> None:
    confidences = np.full(1000, 0.8)
    correct = np.arange(1000) % 5 != 0  # exactly 80 % right
    assert expected_calibration_error(confidences, correct)[0] == pytest.approx(0.0, abs=1e-12)
    assert expected_calibration_error(np.full(1000, 0.99), correct)[0] == pytest.approx(0.19, abs=1e-9)


def test_fit_temperature_recovers_the_temperature_that_generated_the_labels() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(20000, 2, generator=generator) * 4
    labels = torch.multinomial(torch.softmax(logits / 2.5, dim=1), 1, generator=generator).squeeze(1).numpy()
    assert fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.05)


def test_report_fields_and_consistency() -> None:
    logits = torch.tensor([[3.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 1.0]])
    report = classification_report(logits, np.array([0, 1, 1, 1]), ("REAL", "FAKE"), 1.0)
    assert report["accuracy"] == 0.75
    assert report["per_class"]["REAL"]["precision"] == 0.5 and report["per_class"]["FAKE"]["recall"] == pytest.approx(2 / 3)
    assert report["confusion_matrix"]["matrix"] == [[1, 0], [1, 2]]


def test_fitted_threshold_answers_the_requested_coverage_and_no_more_abstains() -> None:
    rng = np.random.default_rng(0)
    fake = rng.uniform(0, 1, 1000)
    probabilities = np.stack([1 - fake, fake], axis=1)
    for coverage in (0.5, 0.9, 0.975):
        threshold = fit_min_confidence(probabilities, coverage)
        kept = answered(probabilities, threshold)
        assert coverage <= kept.mean() <= coverage + 0.002
        assert probabilities.max(axis=1)[~kept].max(initial=0) < threshold


def test_abstaining_on_the_least_confident_raises_accuracy_on_the_answered() -> None:
    fake = np.array([0.99, 0.95, 0.6, 0.45, 0.02, 0.3])
    probabilities = np.stack([1 - fake, fake], axis=1)
    labels = np.array([1, 1, 0, 1, 0, 0])      # the two least confident answers (0.6, 0.45) are wrong
    everything = selective_figures(probabilities, labels, 0.0)
    assert everything["coverage"] == 1.0 and everything["accuracy_answered"] == 4 / 6
    fit = fit_abstention(probabilities, labels, coverage=4 / 6)
    assert fit["fitted_on"] == "validation" and fit["min_confidence"] == 0.7
    assert fit["coverage"] == 4 / 6 and fit["accuracy_answered"] == 1.0
    assert fit_abstention(probabilities, labels, coverage=1.0)["min_confidence"] == 0.0
    assert list(answered(probabilities, 0.7, np.array([True, False, True, True, True, True]))) == [
        True, False, False, False, True, True]


def _synthetic_checks(seed: int = 0, count: int = 4000):
    """Validation-like scores: REAL images (label 0) with domain scores spread so that a stricter REAL threshold
    turns some away, a few confidently wrong answers to make precision cost coverage."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, count)
    p_fake = np.where(labels == 1, rng.beta(8, 1, count), rng.beta(1, 8, count))
    probabilities = np.stack([1 - p_fake, p_fake], axis=1).astype(np.float32)
    scores = CheckScores(probabilities, rng.uniform(0.4, 0.8, count).astype(np.float32),
                         np.clip(p_fake + rng.normal(0, 0.1, count), 0, 1))
    return scores, labels


def test_the_operating_point_spends_what_coverage_allows_on_real_answers() -> None:
    scores, labels = _synthetic_checks()
    fit = fit_operating_point(scores, labels, 0.42, precision=0.99, coverage=0.8, recheck=True)
    kept = scores.answered(fit["min_confidence"], 0.42, fit["real_domain_threshold"], fit["min_confidence"])
    right = scores.probabilities.argmax(axis=1) == labels
    assert fit["coverage"] == kept.mean() >= 0.8 and fit["accuracy_answered"] == right[kept].mean() >= 0.99
    assert fit["real_domain_threshold"] > 0.42 and fit["real_keep"] < 1.0
    looser = fit_operating_point(scores, labels, 0.42, precision=0.99, coverage=0.85, recheck=True)
    assert looser["real_keep"] > fit["real_keep"]   # more coverage to keep: less spent on REAL answers
    weak = fit_operating_point(scores, labels, 0.4, precision=0.9999, coverage=0.99, recheck=True)
    assert not weak["precision_met"] and weak["coverage"] >= 0.99 and weak["real_domain_threshold"] is None
    assert fit["precision_met"] and fit["min_fake"] == fit["min_confidence"]


def test_the_sweep_answers_what_the_one_verdict_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """CheckScores.answered is decide() vectorised for sweeps: both must give the same answers at every point."""
    from detector import answer
    from detector.answer import OperatingPoint, decide
    from detector.metadata import JpegRecheck

    monkeypatch.setattr(answer, "reencode", lambda recheck, images: images)   # the stored P(FAKE) stands for it

    scores, _ = _synthetic_checks(1, 500)
    index = np.arange(500)
    images = np.zeros((500, 3, 1, 1), np.uint8)
    images[:, 0, 0, 0], images[:, 1, 0, 0] = index // 256, index % 256   # each image carries its row
    lookup = dict(zip(index, scores.fake_after_reencoding))
    for min_confidence, real_threshold, min_fake in ((0.7, None, 0.5), (0.85, 0.6, 0.85), (0.0, 0.75, 0.95)):
        point = OperatingPoint(min_confidence, 0.5, JpegRecheck(((1,) * 64,), min_fake=min_fake), real_threshold)
        verdicts = decide(scores.probabilities, ("REAL", "FAKE"), point, scores.domain_scores, images,
                          lambda batch: np.array([lookup[256 * int(a) + int(b)] for a, b in batch[:, :2, 0, 0]]))
        assert (verdicts.answered == scores.answered(min_confidence, 0.5, real_threshold, min_fake)).all()
