"""The TorchServe handler on the built artifacts with a fake TorchServe context: whole batches through
the pipeline, statuses, envelopes, explanations and the spectral opinion, without a server."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from detector.answer import UNCERTAIN, forced_label
from handlers.ai_detector_handler import AIDetectorHandler
from tests.conftest import FakeContext, encode, photo

JPEG = encode(photo(64, 64), "JPEG")


@pytest.fixture(scope="module", params=["ai_detector.pt", "ai_detector.onnx"])
def initialised(request: pytest.FixtureRequest, artifacts_dir: Path) -> tuple[AIDetectorHandler, str]:
    handler = AIDetectorHandler()
    handler.initialize(FakeContext(artifacts_dir, request.param, {"intra_op_threads": 1}))
    return handler, request.param


def test_handle_answers_every_request_of_a_mixed_batch(initialised, cifake_images) -> None:
    handler, _ = initialised
    good = [data for _, data in cifake_images[:2]] + [data for _, data in cifake_images[-2:]]
    batch = [{"body": good[0]}, {"body": b""}, {"data": good[1]}, {"body": b"<html></html>"}, {"body": good[2]},
             {"body": {"image": base64.b64encode(good[3]).decode()}}]
    context = FakeContext(Path("."), "unused")
    responses = handler.handle(batch, context)
    assert len(responses) == len(batch)
    assert set(context.statuses) == {1, 3}
    assert context.content_types == {i: "application/json" for i in range(len(batch))}
    assert context.statuses[1][0] == 400 and context.statuses[3][0] == 415
    for index in (0, 2, 4, 5):
        assert responses[index]["label"] in ("REAL", "FAKE", UNCERTAIN)
        assert sum(responses[index]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert responses[1]["type"] == "EmptyInput" and responses[3]["type"] == "UnsupportedFormat"
    metrics = context.metrics
    assert metrics.total("BatchSize") == 6
    assert metrics.total("InputErrors", ErrorType="EmptyInput") == 1
    assert metrics.total("InputErrors", ErrorType="UnsupportedFormat") == 1
    assert sum(metrics.total("Predictions", Label=label) for label in ("REAL", "FAKE", UNCERTAIN)) == 4
    assert metrics.total("InferenceMs") > 0 and metrics.total("PreprocessMs") > 0
    assert {kind for name, *_, kind in metrics.emitted if name == "BatchSize"} == {"histogram"}


def test_both_backends_agree_through_the_handler(artifacts_dir: Path, cifake_images) -> None:
    batch = [{"body": data} for _, data in cifake_images]
    outputs = []
    for artifact in ("ai_detector.pt", "ai_detector.onnx"):
        handler = AIDetectorHandler()
        handler.initialize(FakeContext(artifacts_dir, artifact, {"intra_op_threads": 1}))
        outputs.append([r["probabilities"]["FAKE"] for r in handler.handle(batch, FakeContext(Path("."), "x"))])
    assert np.abs(np.array(outputs[0]) - np.array(outputs[1])).max() < 1e-3


def test_items_of_one_enveloped_request_keep_their_errors_in_the_body(initialised, cifake_images) -> None:
    """KServe's envelope hands the handler the instances of ONE HTTP request: no per-item HTTP status."""
    handler, _ = initialised
    context = FakeContext(Path("."), "unused")
    context.request_ids = {0: "one-http-request"}
    instances = [{"data": base64.b64encode(cifake_images[0][1]).decode()}, {"data": "not base64!"}]
    responses = handler.handle(instances, context)
    assert responses[0]["label"] in ("REAL", "FAKE", UNCERTAIN) and responses[1]["code"] == 415
    assert context.statuses == {} and context.content_types == {}


def test_explanation_requests_get_a_gradcam_and_predictions_do_not(initialised, cifake_images) -> None:
    handler, _ = initialised
    context = FakeContext(Path("."), "unused")
    context.headers = {1: {"explain": "True"}, 2: {"explain": "True"}}
    responses = handler.handle([{"body": cifake_images[0][1]}, {"body": cifake_images[-1][1]}, {"body": b"junk"}], context)
    assert "gradcam" not in responses[0] and responses[2]["code"] == 415
    explained = responses[1]
    assert explained["label"] in ("REAL", "FAKE", UNCERTAIN) and np.array(explained["gradcam"]["map"]).shape == (7, 7)
    assert base64.b64decode(explained["gradcam"]["png"])[:8] == b"\x89PNG\r\n\x1a\n"


def test_spectral_second_opinion_is_reported_but_never_sets_the_label(initialised, cifake_images) -> None:
    handler, _ = initialised
    assert handler.pipeline.spectral is not None   # shipped model/spectral.json travels in the archive
    responses = handler.handle([{"body": data} for _, data in cifake_images], FakeContext(Path("."), "unused"))
    disagreements = 0
    for response in responses:
        spectral = response["spectral"]
        assert 0.0 <= spectral["p_fake"] <= 1.0 and spectral["test_accuracy"] == handler.pipeline.spectral.metrics["test_accuracy"]
        assert forced_label(response) == max(response["probabilities"], key=response["probabilities"].get)  # the CNN's
        disagreements += (spectral["p_fake"] > 0.5) != (forced_label(response) == "FAKE")
    assert disagreements > 0, "with ~80 % accuracy the score must disagree with the CNN somewhere in 40 images"


def test_batch_of_only_bad_requests_runs_no_inference(initialised) -> None:
    handler, _ = initialised
    context = FakeContext(Path("."), "unused")
    responses = handler.handle([{"body": b"x"}, {}], context)
    assert [r["code"] for r in responses] == [415, 400] and set(context.statuses) == {0, 1}
    assert "InferenceMs" not in {name for name, *_ in context.metrics.emitted}
