"""The served-vs-offline comparison fails on each thing it guards: gaps, failed requests, another model."""

from __future__ import annotations


import numpy as np
import pytest

from ops.served_accuracy import compare

CLASSES = ("REAL", "FAKE")
TRUTH = np.array([0, 1] * 500)
OFFLINE = {"accuracy": 0.9, "coverage": 0.97, "version": "1.0"}


def served(wrong: int, failed: int = 0, versions: tuple[str, ...] = ("1.0",), uncertain: int = 30) -> dict:
    """Answers for TRUTH with ``wrong`` wrong labels, ``failed`` failed requests and ``uncertain`` UNCERTAIN ones."""
    labels = [CLASSES[t] for t in TRUTH]
    for i in range(wrong):
        labels[i] = CLASSES[1 - TRUTH[i]]
    for i in range(wrong, wrong + failed):
        labels[i] = None
    flags = [i >= len(TRUTH) - uncertain for i in range(len(TRUTH))]
    return {"labels": labels, "uncertain": flags, "versions": list(versions), "requests_per_second": 10.0}


def test_accuracy_within_the_tolerance_passes_and_beyond_it_fails() -> None:
    within = compare("m", served(wrong=101), TRUTH, CLASSES, OFFLINE, tolerance_pt=0.1)   # 89.9 %
    assert within["served_accuracy"] == pytest.approx(0.899) and within["gap_pt"] == pytest.approx(-0.1)
    assert within["passed"]
    assert not compare("m", served(wrong=103), TRUTH, CLASSES, OFFLINE, tolerance_pt=0.1)["passed"]  # 89.7 %


def test_coverage_must_match_offline_too() -> None:
    same = compare("m", served(wrong=100, uncertain=31), TRUTH, CLASSES, OFFLINE, tolerance_pt=0.1)   # 96.9 %
    assert same["served_coverage"] == pytest.approx(0.969) and same["passed"]
    assert not compare("m", served(wrong=100, uncertain=40), TRUTH, CLASSES, OFFLINE, tolerance_pt=0.1)["passed"]


def test_a_failed_request_or_another_model_version_fails_even_at_equal_accuracy() -> None:
    failed = compare("m", served(wrong=99, failed=1), TRUTH, CLASSES, OFFLINE, tolerance_pt=0.1)
    assert failed["failures"] == 1 and failed["served_accuracy"] == pytest.approx(0.9) and not failed["passed"]
    other = compare("m", served(wrong=100, versions=("2.0",)), TRUTH, CLASSES, OFFLINE, tolerance_pt=0.1)
    assert other["gap_pt"] == 0 and not other["passed"]
