"""The one verdict: REAL, FAKE or UNCERTAIN with its reason, in the order the checks are applied."""

from __future__ import annotations

import numpy as np
import pytest

from detector.answer import (COMPRESSION_SENSITIVE, LOW_CONFIDENCE, OUT_OF_DOMAIN, UNCERTAIN, OperatingPoint, Verdicts,
                             decide, forced_label)
from detector.metadata import DomainGate, JpegRecheck, ModelMetadata

CLASSES = ("REAL", "FAKE")
RECHECK = JpegRecheck(((1,) * 64,))


def two_class(p_fake: list[float]) -> np.ndarray:
    fake = np.array(p_fake, dtype=np.float32)
    return np.stack([1 - fake, fake], axis=1)


def test_it_abstains_only_below_the_confidence_threshold() -> None:
    verdicts = decide(two_class([0.8, 0.3, 0.5]), CLASSES, OperatingPoint(min_confidence=0.75))
    assert verdicts.answer(0) == {"label": "FAKE"}
    assert verdicts.answer(1) == {"label": UNCERTAIN, "abstained": {"reason": LOW_CONFIDENCE, "threshold": 0.75,
                                                                    "confidence": 0.7, "leaning": "REAL"}}
    assert list(verdicts.answered) == [True, False, False]
    assert decide(two_class([0.5]), CLASSES, OperatingPoint()).label(0) in CLASSES   # 0 never abstains


def test_the_domain_gate_comes_first_and_a_picture_it_turns_away_is_never_rechecked() -> None:
    asked = []

    def p_fake(images: np.ndarray) -> np.ndarray:
        asked.append(len(images))
        return np.full(len(images), 0.2)

    images = np.zeros((4, 3, 8, 8), np.uint8)
    point = OperatingPoint(0.6, 0.5, RECHECK)
    verdicts = decide(two_class([0.9, 0.55, 0.95, 0.1]), CLASSES, point, np.array([0.4, 0.9, 0.9, 0.9]), images, p_fake)
    assert verdicts.reasons == (OUT_OF_DOMAIN, LOW_CONFIDENCE, COMPRESSION_SENSITIVE, None)
    assert asked == [1]                       # only row 2: confident, in domain and leaning FAKE
    assert verdicts.answer(0)["abstained"] == {"reason": OUT_OF_DOMAIN, "domain_score": 0.4, "threshold": 0.5,
                                               "confidence": 0.9, "leaning": "FAKE"}
    assert verdicts.answer(2)["abstained"] == {"reason": COMPRESSION_SENSITIVE, "fake_after_reencoding": 0.2,
                                               "threshold": 0.5, "confidence": 0.95, "leaning": "FAKE"}
    assert np.isnan(verdicts.fake_after_reencoding[[0, 1, 3]]).all()
    assert verdicts.share(COMPRESSION_SENSITIVE) == 0.25 and verdicts.label(3) == "REAL"


def test_a_fake_answer_that_survives_the_recheck_stands() -> None:
    verdicts = decide(two_class([0.9]), CLASSES, OperatingPoint(0.6, None, RECHECK), None,
                      np.zeros((1, 3, 8, 8), np.uint8), lambda images: np.full(len(images), 0.5))
    assert verdicts.answer(0) == {"label": "FAKE"} and verdicts.fake_after_reencoding[0] == 0.5


def test_a_recheck_without_the_model_to_run_it_is_refused() -> None:
    with pytest.raises(ValueError, match="JPEG recheck"):
        decide(two_class([0.9]), CLASSES, OperatingPoint(0.6, None, RECHECK))


def test_thresholds_compare_in_double_precision() -> None:
    confidence = np.float32(0.7)
    threshold = float(confidence) + 1e-12        # rounds to float32's 0.7: a float32 comparison would answer
    assert decide(two_class([confidence]), CLASSES, OperatingPoint(threshold)).reasons == (LOW_CONFIDENCE,)


def test_the_operating_point_of_a_model_is_the_one_fitted_with_its_weights() -> None:
    metadata = ModelMetadata(min_confidence=0.7, domain_gate=DomainGate(threshold=0.54), jpeg_recheck=RECHECK)
    assert OperatingPoint.of(metadata) == OperatingPoint(0.7, 0.54, RECHECK)
    assert OperatingPoint.of(ModelMetadata()) == OperatingPoint(0.0, None, None)


def test_verdicts_of_consecutive_batches_join_in_order() -> None:
    point = OperatingPoint(0.6)
    parts = [decide(two_class([0.9, 0.5]), CLASSES, point), decide(two_class([0.1]), CLASSES, point)]
    joined = Verdicts.concatenate(parts)
    assert joined.reasons == (None, LOW_CONFIDENCE, None) and [joined.label(i) for i in range(3)] == [
        "FAKE", UNCERTAIN, "REAL"]


def test_the_forced_label_is_the_leaning_of_an_uncertain_answer() -> None:
    assert forced_label({"label": "REAL"}) == "REAL"
    assert forced_label({"label": UNCERTAIN, "abstained": {"leaning": "FAKE"}}) == "FAKE"


def test_a_real_answer_needs_the_higher_domain_score_and_a_fake_answer_does_not() -> None:
    point = OperatingPoint(0.6, 0.5, None, real_domain_threshold=0.7)
    verdicts = decide(two_class([0.1, 0.9, 0.1, 0.9]), CLASSES, point, np.array([0.6, 0.6, 0.8, 0.4]))
    assert verdicts.reasons == (OUT_OF_DOMAIN, None, None, OUT_OF_DOMAIN)
    assert verdicts.answer(0)["abstained"] == {"reason": OUT_OF_DOMAIN, "domain_score": 0.6, "threshold": 0.7,
                                               "confidence": 0.9, "leaning": "REAL"}
    assert verdicts.answer(3)["abstained"]["threshold"] == 0.5
    assert [verdicts.label(row) for row in (1, 2)] == ["FAKE", "REAL"]
    unlimited = decide(two_class([0.1]), CLASSES, OperatingPoint(0.6, 0.5), np.array([0.6]))
    assert unlimited.label(0) == "REAL"   # without it, REAL needs only the gate's threshold (model 0.4.4)


def test_a_fake_answer_needs_the_recheck_s_min_fake_after_reencoding() -> None:
    strict = JpegRecheck(((1,) * 64,), min_fake=0.8)
    images = np.zeros((2, 3, 8, 8), np.uint8)
    verdicts = decide(two_class([0.9, 0.9]), CLASSES, OperatingPoint(0.6, None, strict), None, images,
                      lambda batch: np.array([0.79, 0.8]))
    assert verdicts.reasons == (COMPRESSION_SENSITIVE, None)
    lenient = decide(two_class([0.9]), CLASSES, OperatingPoint(0.6, None, RECHECK), None, images[:1],
                     lambda batch: np.array([0.5]))
    assert lenient.label(0) == "FAKE"   # the default 0.5: the re-encoded picture only has to lean FAKE
