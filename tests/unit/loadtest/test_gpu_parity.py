"""The GPU parity report's arithmetic (CI has no GPU; the GPU run is in BENCHMARKS.md)."""

from __future__ import annotations

import numpy as np
import pytest

from loadtest.gpu_parity import compare


def test_compare_reports_the_largest_move_and_the_flipped_labels() -> None:
    reference = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    candidate = np.array([[0.4, 0.6], [0.25, 0.75], [0.7, 0.3]])
    report = compare(reference, candidate, labels=np.array([0, 1, 0]))
    assert report["max_abs_delta_probability"] == pytest.approx(0.5)
    assert report["label_agreement"] == pytest.approx(2 / 3)
    assert report["reference_accuracy"] == 1.0 and report["candidate_accuracy"] == pytest.approx(2 / 3)
