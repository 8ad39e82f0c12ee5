"""The pipeline's stages called one by one (request bytes, decoding, responses): no artifacts, no data, no
server."""

from __future__ import annotations

import base64
import dataclasses
import json

import numpy as np
import pytest
import torch

from detector.answer import OperatingPoint, decide
from detector.metadata import ModelMetadata
from detector.pipeline import (DetectorPipeline, Opinions, PreparedBatch, build_responses, decode_batch,
                               extract_image_bytes)
from detector.preprocessing import DecodeLimits, InvalidImageError
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


def test_json_nested_past_the_parsers_depth_is_left_to_the_image_decoder() -> None:
    """A hostile body must fail as its own request (415 from the decoder), never as the batch's exception."""
    hostile = b'{"image":' + b"[" * 100000
    assert extract_image_bytes({"body": hostile}) == hostile


def test_decode_batch_keeps_good_requests_and_records_bad_ones() -> None:
    metadata = ModelMetadata()
    prepared = decode_batch([{"body": JPEG}, {"body": b"junk"}, {"data": encode(photo(500, 300), "PNG")}],
                          metadata, DecodeLimits())
    assert prepared.images.shape == (2, 3, 32, 32) and prepared.images.dtype == np.uint8
    assert prepared.positions == [0, 2]
    assert set(prepared.errors) == {1} and prepared.errors[1].status == 415


def test_the_pipeline_applies_the_temperature_and_responses_keep_request_order() -> None:
    pipeline = DetectorPipeline.load(MODEL_DIR, point=OperatingPoint())
    pipeline.metadata = dataclasses.replace(pipeline.metadata, temperature=2.0)
    logits = np.array([[2.0, 0.0], [0.0, 3.0]], dtype=np.float32)
    probabilities = pipeline.calibrated(logits)
    assert np.allclose(probabilities, torch.softmax(torch.tensor(logits) / 2.0, dim=1).numpy(), atol=1e-6)
    prepared = PreparedBatch(images=np.zeros((2, 3, 32, 32), np.uint8), positions=[0, 2],
                             errors={1: InvalidImageError("bad", status=400)})
    verdicts = decide(probabilities, pipeline.metadata.class_names, OperatingPoint())
    responses = build_responses(prepared, probabilities, verdicts, "9.9.9-onnx", "torchscript")
    assert [r.get("label") for r in responses] == ["REAL", None, "FAKE"]
    assert not any("abstained" in r for r in responses)
    assert responses[1] == {"code": 400, "type": "InvalidImage", "message": "bad"}
    assert responses[0]["probabilities"]["REAL"] == pytest.approx(float(probabilities[0, 0]), abs=1e-6)
    assert responses[2]["probabilities"]["FAKE"] == pytest.approx(float(probabilities[1, 1]), abs=1e-6)
    assert sum(responses[2]["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    assert responses[0]["model_version"] == "9.9.9-onnx" and responses[0]["backend"] == "torchscript"


def test_a_response_is_built_once_with_every_field_in_its_order() -> None:
    probabilities = np.array([[0.269, 0.731], [0.018, 0.982]], dtype=np.float32)
    prepared = PreparedBatch(images=np.zeros((2, 3, 32, 32), np.uint8), positions=[0, 1])
    verdicts = decide(probabilities, ("REAL", "FAKE"), OperatingPoint(0.9, 0.5), np.array([0.8, 0.7]))
    opinions = Opinions(np.array([0.25, 0.75]), 0.79, {1: {"map": [[0.0]]}})
    responses = build_responses(prepared, probabilities, verdicts, "1.0", "onnx", opinions)
    assert list(responses[0]) == ["label", "probabilities", "model_version", "backend", "domain_score", "abstained",
                                  "spectral"]
    assert list(responses[1]) == ["label", "probabilities", "model_version", "backend", "domain_score", "spectral",
                                  "gradcam"]
    assert responses[0]["label"] == "UNCERTAIN" and responses[0]["abstained"]["reason"] == "low_confidence"
    assert responses[0]["spectral"] == {"p_fake": 0.25, "test_accuracy": 0.79} and responses[1]["domain_score"] == 0.7
    assert responses[1]["gradcam"] == {"map": [[0.0]]}


def test_offline_probabilities_are_the_served_ones_and_refuse_an_undecodable_file() -> None:
    pipeline = DetectorPipeline.load(MODEL_DIR, point=OperatingPoint())
    files = [encode(photo(64, 48, seed), "JPEG") for seed in range(3)]
    served = pipeline.run([{"body": data} for data in files]).responses
    expected = np.array([[r["probabilities"]["REAL"], r["probabilities"]["FAKE"]] for r in served])
    assert np.allclose(pipeline.probabilities(files, batch_size=2), expected, atol=1e-6)
    probabilities, verdicts = pipeline.assess(files, batch_size=2)
    assert np.allclose(probabilities, expected, atol=1e-6) and [verdicts.label(i) for i in range(3)] == [
        r["label"] for r in served]
    with pytest.raises(InvalidImageError, match="^file 3: "):
        pipeline.probabilities([*files, b"junk"], batch_size=2)


def test_a_domain_threshold_needs_a_model_with_a_domain_gate() -> None:
    with pytest.raises(ValueError, match="without a domain gate"):
        DetectorPipeline(MODEL_DIR, ModelMetadata(), None, OperatingPoint(domain_threshold=0.5), "1")
