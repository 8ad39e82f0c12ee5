"""The archive's handler settings, parsed once into one resolved form each, and the batch metrics."""

from __future__ import annotations

import os

import pytest

from detector.answer import OperatingPoint
from detector.metadata import DomainGate, JpegRecheck, ModelMetadata
from detector.pipeline import PipelineResult
from detector.preprocessing import InvalidImageError
from handlers.metrics import batch_metrics
from handlers.settings import HandlerSettings

RECHECK = JpegRecheck(((1,) * 64,))
MODEL = ModelMetadata(min_confidence=0.93, domain_gate=DomainGate(threshold=0.54), jpeg_recheck=RECHECK)
STRICT = JpegRecheck(((1,) * 64,), min_fake=0.888)
SHIPPED = ModelMetadata(min_confidence=0.888, domain_gate=DomainGate(threshold=0.5421, real_threshold=0.5845),
                        jpeg_recheck=STRICT)


def point(section: dict) -> OperatingPoint:
    return HandlerSettings.from_yaml(section, MODEL, environ={}).point


def test_the_operating_point_is_the_models_unless_the_archive_sets_it() -> None:
    assert point({}) == point({"min_confidence": "model", "domain_threshold": "model", "jpeg_recheck": "model"}) == \
        OperatingPoint(0.93, 0.54, RECHECK)
    assert point({"min_confidence": False}).min_confidence == 0.0   # YAML's bare off
    assert point({"min_confidence": "off"}).min_confidence == 0.0
    assert point({"min_confidence": 0.8}).min_confidence == 0.8
    assert point({"domain_threshold": "off"}).domain_threshold is None
    assert point({"domain_threshold": 0.6}).domain_threshold == 0.6
    assert point({"jpeg_recheck": "off"}).recheck is None


def test_the_settings_can_restore_the_answers_of_model_0_4_4() -> None:
    """0.4.5 asks more of REAL answers (real_domain_threshold) and of rechecked FAKE answers; an operator who
    wants 0.4.4's answers sets its confidence threshold and turns the two off (README, model-config.yaml)."""
    shipped = HandlerSettings.from_yaml({}, SHIPPED, environ={}).point
    assert shipped == OperatingPoint(0.888, 0.5421, STRICT, 0.5845)
    restored = HandlerSettings.from_yaml({"min_confidence": 0.7028865218162537, "real_domain_threshold": "off",
                                          "recheck_min_fake": 0.5}, SHIPPED, environ={}).point
    assert restored == OperatingPoint(0.7028865218162537, 0.5421, JpegRecheck(((1,) * 64,), min_fake=0.5), None)
    assert point({"real_domain_threshold": 0.6}).real_domain_threshold == 0.6
    assert HandlerSettings.from_yaml({"domain_threshold": "off"}, SHIPPED, environ={}).point.real_domain_threshold is None


def test_a_model_without_a_gate_or_a_recheck_runs_neither_whatever_the_archive_asks() -> None:
    bare = HandlerSettings.from_yaml({"domain_threshold": 0.6, "jpeg_recheck": "model"}, ModelMetadata(), environ={})
    assert bare.point == OperatingPoint(0.0, None, None)


@pytest.mark.parametrize("key, bad", [("min_confidence", 0.3), ("min_confidence", 1.0), ("min_confidence", "sometimes"),
                                      ("min_confidence", True), ("domain_threshold", 1.5), ("domain_threshold", "on"),
                                      ("jpeg_recheck", "on"), ("real_domain_threshold", 2), ("recheck_min_fake", 0.4),
                                      ("recheck_min_fake", "off")])
def test_values_outside_their_range_are_refused(key: str, bad) -> None:
    with pytest.raises(ValueError, match=key):
        point({key: bad})


def test_thread_count_comes_from_the_environment_then_the_archive_then_the_cores() -> None:
    assert HandlerSettings.from_yaml({"intra_op_threads": 3}, MODEL, environ={}).threads == 3
    assert HandlerSettings.from_yaml({"intra_op_threads": 3}, MODEL,
                                     environ={"AI_DETECTOR_INTRA_OP_THREADS": "1"}).threads == 1
    assert HandlerSettings.from_yaml({"intra_op_threads": 0}, MODEL, environ={}).threads == (os.cpu_count() or 1)


def test_handler_settings_reject_unknown_keys() -> None:
    assert HandlerSettings.from_yaml({"max_image_bytes": 10}, MODEL, environ={}).limits.max_bytes == 10
    with pytest.raises(ValueError, match="unknown handler settings"):
        HandlerSettings.from_yaml({"max_image_byte": 10}, MODEL, environ={})


def test_batch_metrics_count_answers_by_label_reasons_and_errors() -> None:
    responses = [{"label": "FAKE"}, {"label": "UNCERTAIN", "abstained": {"reason": "low_confidence"}},
                 {"label": "UNCERTAIN", "abstained": {"reason": "out_of_domain"}}, {"code": 415}]
    result = PipelineResult(responses, {3: InvalidImageError("x", status=415, kind="UnsupportedFormat")}, 3, 1.0, 2.0,
                            0.5, None)
    samples = {(m.name, m.dimensions): m.value for m in batch_metrics(result)}
    assert samples[("Predictions", (("Label", "UNCERTAIN"),))] == 2 and samples[("Predictions", (("Label", "FAKE"),))] == 1
    assert samples[("Abstentions", (("Reason", "out_of_domain"),))] == 1
    assert samples[("InputErrors", (("ErrorType", "UnsupportedFormat"),))] == 1
    assert samples[("DomainGateMs", ())] == 0.5 and ("RecheckMs", ()) not in samples
    only_errors = PipelineResult([{"code": 415}], {}, 0, 1.0, 0.0, None, None)
    assert {m.name for m in batch_metrics(only_errors)} == {"BatchSize", "PreprocessMs"}
