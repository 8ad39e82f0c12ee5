"""Domain scores' arithmetic and the scorer on synthetic pictures: no data, no archives."""

from __future__ import annotations

import numpy as np
import torch

from detector.domain import DomainGate, DomainGateSpec
from detector.model import load_model
from detector.preprocessing import load_aligned
from tests.conftest import MODEL_DIR, encode, photo
from training import domain
from training.outside import answer_counts, risk_coverage


def test_a_domain_gate_turns_answers_into_uncertain_and_ranks_the_risk_coverage_curve() -> None:
    truth = np.array([0, 1, 0, 1], dtype=bool)
    p_fake = np.array([0.01, 0.99, 0.98, 0.02])                   # the last two are confidently wrong
    probabilities = np.stack([1 - p_fake, p_fake], axis=1)
    in_domain = np.array([True, True, False, False])
    gated = answer_counts(truth, probabilities, 0.5, in_domain)
    assert (gated["answered_real"], gated["answered_fake"], gated["uncertain"], gated["wrong"]) == (1, 1, 2, 0.0)
    assert answer_counts(truth, probabilities, 0.5)["wrong"] == 0.5
    coverage, risk = risk_coverage(truth, probabilities, answer_first=in_domain.astype(float))
    assert risk[1] == 0.0 and risk[-1] == 0.5 and coverage[-1] == 1.0


def test_scorer_ranks_against_validation_and_thresholds_keep_the_asked_share() -> None:
    model, metadata = load_model(MODEL_DIR)

    def pictures(seeds: range) -> np.ndarray:
        return np.stack([load_aligned(encode(photo(96, 96, seed), "PNG"), 32, "bicubic").transpose(2, 0, 1)
                         for seed in seeds])

    references = pictures(range(0, 24))
    colour = lambda images: torch.nn.functional.normalize(torch.from_numpy(images).float().mean(dim=(2, 3)) + 1, dim=1).numpy()  # noqa: E731
    gate = DomainGate(colour, colour(references), DomainGateSpec(neighbour=3))   # stands in for the ImageNet gate
    scorer = domain.DomainScorer(model, metadata, references, gate)
    scorer.calibrate(pictures(range(100, 140)))
    for method in domain.METHODS:
        kept = (scorer.validation_scores[method] >= scorer.threshold(method, 0.75)).mean()
        assert 0.7 <= kept <= 0.8, method
    scored = scorer.score(pictures(range(200, 205)), np.zeros(5, dtype=bool))
    assert set(scored.scores) == set(domain.METHODS) and scored.probabilities.shape == (5, 2)
    assert np.all((scored.scores["ensemble"] >= 0) & (scored.scores["ensemble"] <= 1))
    assert np.allclose(scored.scores["confidence"], scored.probabilities.max(axis=1))
