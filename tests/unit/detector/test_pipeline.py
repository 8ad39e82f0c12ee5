"""The pipeline's stages called one by one (request bytes, decoding, answers, settings, metrics): no
artifacts, no data, no server."""

from __future__ import annotations

import base64
import dataclasses
import json
import os

import numpy as np
import pytest
import torch

from detector.answer import UNCERTAIN
from detector.metadata import ModelMetadata
from detector.preprocessing import DecodeLimits, InvalidImageError
from detector.pipeline import (DOMAIN_OFF, DetectorPipeline, HandlerSettings, PreparedBatch, answers, batch_metrics, decode_batch,
                               extract_image_bytes)
from tests.conftest import MODEL_DIR, encode, photo

JPEG = encode(photo(64, 64), "JPEG")


@pytest.mark.parametrize(
    "request_dict",
    [
        {"body": bytearray(JPEG)},                                        # curl -T / --data-binary
        {"data": JPEG},                                                   # multipart field "data"
        {"body": {"image": base64.b64encode(JPEG).decode()}},             # JSON decoded by TorchServe
        {"body": json.dumps({"data": base64.b64encode(JPEG).decode()}).encode()},  # JSON left undecoded
        {"body": {"image": "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()}},  # data URL
        {"data": base64.b64encode(JPEG).decode()},                        # KServe v1 instance (kserve envelope)
    ],
)
def test_extract_image_bytes_accepts_every_documented_form(request_dict: dict) -> None:
    assert extract_image_bytes(request_dict) == JPEG


@pytest.mark.parametrize(
    ("request_dict", "kind", "status"),
    [
        ({}, "MissingInput", 400),
        ({"file": JPEG}, "MissingInput", 400),
        ({"body": {"image": "%%% not base64 %%%"}}, "BadBase64", 400),
        ({"body": {"picture": "abc"}}, "BadJson", 400),
        ({"body": [1, 2]}, "BadJson", 400),
        ({"body": "plain text body"}, "UnsupportedFormat", 415),
    ],
)
def test_extract_image_bytes_rejects_with_typed_errors(request_dict: dict, kind: str, status: int) -> None:
    with pytest.raises(InvalidImageError) as caught:
        extract_image_bytes(request_dict)
    assert (caught.value.kind, caught.value.status) == (kind, status)


def test_decode_batch_keeps_good_requests_and_records_bad_ones() -> None:
    metadata = ModelMetadata()
    prepared = decode_batch([{"body": JPEG}, {"body": b"junk"}, {"data": encode(photo(500, 300), "PNG")}],
                          metadata, DecodeLimits())
    assert prepared.images.shape == (2, 3, 32, 32) and prepared.images.dtype == np.uint8
    assert prepared.positions == [0, 2]
    assert set(prepared.errors) == {1} and prepared.errors[1].status == 415


def test_the_pipeline_applies_the_temperature_and_answers_keep_request_order() -> None:
    pipeline = DetectorPipeline.load(MODEL_DIR, settings=HandlerSettings(domain_threshold=DOMAIN_OFF))
    pipeline.metadata = dataclasses.replace(pipeline.metadata, temperature=2.0)
    logits = np.array([[2.0, 0.0], [0.0, 3.0]], dtype=np.float32)
    probabilities = pipeline.calibrated(logits)
    assert np.allclose(probabilities, torch.softmax(torch.tensor(logits) / 2.0, dim=1).numpy(), atol=1e-6)
    prepared = PreparedBatch(images=np.zeros((2, 3, 32, 32), np.uint8), positions=[0, 2],
                             errors={1: InvalidImageError("bad", status=400)})
    responses = answers(probabilities, prepared, pipeline.metadata, "torchscript", "9.9.9-onnx", min_confidence=0.0)
    assert [r.get("label") for r in responses] == ["REAL", None, "FAKE"]
    assert not any("abstained" in r for r in responses)
    assert responses[1] == {"code": 400, "type": "InvalidImage", "message": "bad"}
    assert responses[0]["probabilities"]["REAL"] == pytest.approx(float(probabilities[0, 0]), abs=1e-6)
    assert responses[2]["probabilities"]["FAKE"] == pytest.approx(float(probabilities[1, 1]), abs=1e-6)
    assert sum(responses[2]["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    assert responses[0]["model_version"] == "9.9.9-onnx" and responses[0]["backend"] == "torchscript"


def test_answers_below_the_operating_confidence_are_uncertain_with_the_reason() -> None:
    metadata = ModelMetadata(temperature=1.0, min_confidence=0.9)
    probabilities = np.array([[0.269, 0.731], [0.018, 0.982], [0.953, 0.047]])
    prepared = PreparedBatch(images=np.zeros((3, 3, 32, 32), np.uint8), positions=[0, 1, 2])
    responses = answers(probabilities, prepared, metadata, "onnx", "1.0", HandlerSettings.from_yaml({}).abstain_below(metadata))
    assert [r["label"] for r in responses] == ["UNCERTAIN", "FAKE", "REAL"]
    abstained = responses[0]["abstained"]
    assert abstained["reason"] == "low_confidence" and abstained["leaning"] == "FAKE" and abstained["threshold"] == 0.9
    assert abstained["confidence"] == pytest.approx(responses[0]["probabilities"]["FAKE"], abs=1e-6)
    assert "abstained" not in responses[1] and "abstained" not in responses[2]
    forced = answers(probabilities, prepared, metadata, "onnx", "1.0", HandlerSettings.from_yaml({"min_confidence": "off"})
                         .abstain_below(metadata))
    assert [r["label"] for r in forced] == ["FAKE", "FAKE", "REAL"]


def test_uncertain_answers_are_counted_under_their_own_label() -> None:
    prepared = PreparedBatch(images=np.zeros((3, 3, 32, 32), np.uint8), positions=[0, 1, 2])
    responses = [{"label": "FAKE"}, {"label": UNCERTAIN}, {"label": UNCERTAIN}]
    samples = {(m.name, m.dimensions): m.value for m in batch_metrics(prepared, responses, 1.0, 2.0)}
    assert samples[("Predictions", (("Label", UNCERTAIN),))] == 2 and samples[("Predictions", (("Label", "FAKE"),))] == 1


def test_operating_confidence_is_the_models_unless_the_archive_sets_it() -> None:
    metadata = ModelMetadata(min_confidence=0.93)
    assert HandlerSettings.from_yaml({}).abstain_below(metadata) == 0.93
    assert HandlerSettings.from_yaml({"min_confidence": "model"}).abstain_below(metadata) == 0.93
    assert HandlerSettings.from_yaml({"min_confidence": False}).abstain_below(metadata) == 0.0   # YAML's bare off
    assert HandlerSettings.from_yaml({"min_confidence": 0.8}).abstain_below(metadata) == 0.8
    for bad in (0.3, 1.0, "sometimes", True):
        with pytest.raises(ValueError, match="min_confidence"):
            HandlerSettings.from_yaml({"min_confidence": bad})


def test_thread_count_comes_from_the_environment_then_the_archive_then_the_cores() -> None:
    assert HandlerSettings.from_yaml({"intra_op_threads": 3}, environ={}).threads == 3
    assert HandlerSettings.from_yaml({"intra_op_threads": 3}, environ={"AI_DETECTOR_INTRA_OP_THREADS": "1"}).threads == 1
    assert HandlerSettings.from_yaml({"intra_op_threads": 0}, environ={}).threads == (os.cpu_count() or 1)


def test_handler_settings_reject_unknown_keys() -> None:
    assert HandlerSettings.from_yaml({"max_image_bytes": 10, "intra_op_threads": 1}).limits.max_bytes == 10
    with pytest.raises(ValueError, match="unknown handler settings"):
        HandlerSettings.from_yaml({"max_image_byte": 10})




def test_offline_probabilities_are_the_served_ones_and_refuse_an_undecodable_file() -> None:
    pipeline = DetectorPipeline.load(MODEL_DIR, settings=HandlerSettings(domain_threshold=DOMAIN_OFF))
    files = [encode(photo(64, 48, seed), "JPEG") for seed in range(3)]
    prepared = pipeline.decode([{"body": data} for data in files])
    served = answers(pipeline.calibrated(pipeline.infer(prepared)), prepared, pipeline.metadata, "eager", "1", 0.0)
    expected = np.array([[r["probabilities"]["REAL"], r["probabilities"]["FAKE"]] for r in served])
    assert np.allclose(pipeline.probabilities(files, batch_size=2), expected, atol=1e-6)
    with pytest.raises(InvalidImageError, match="^file 3: "):
        pipeline.probabilities([*files, b"junk"], batch_size=2)
