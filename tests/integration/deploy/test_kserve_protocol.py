"""The KServe layout served by a real TorchServe on 127.0.0.1 with deploy/kserve/config.properties:
the v1 protocol (POST /v1/models/ai_detector:predict) through the kserve envelope, as KServe's ingress sends it."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
import requests

from ops.kserve_layout import build_layout
from ops.server import stop
from tests.conftest import MODEL_STORE
from tests.integration.conftest import check_schema, start_server
from tests.integration.test_torchserve import offline_fake_probabilities


@pytest.fixture(scope="module")
def kserve_server(tmp_path_factory: pytest.TempPathFactory, cifake_dir: Path):
    layout = build_layout(MODEL_STORE, tmp_path_factory.mktemp("kserve") / "storage")
    run_dir = tmp_path_factory.mktemp("kserve_run")
    store = layout / "model-store"
    client = start_server(run_dir, lambda config: config.set("model_store", str(store)),
                          model_store=store, template=layout / "config" / "config.properties")
    yield client
    stop(run_dir)


def test_v1_protocol_answers_each_instance_and_keeps_bad_ones_in_the_body(kserve_server, cifake_images) -> None:
    instances = [{"data": base64.b64encode(data).decode()} for _, data in cifake_images[:3]]
    instances.insert(1, {"data": base64.b64encode(b"<svg></svg>").decode()})
    response = requests.post(f"{kserve_server.inference_url}/v1/models/ai_detector:predict",
                             json={"instances": instances}, timeout=60)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 4
    for index in (0, 2, 3):
        check_schema(predictions[index])
    assert predictions[1]["code"] == 415 and predictions[1]["type"] == "UnsupportedFormat"


def test_v1_protocol_matches_offline_predictions(kserve_server, cifake_images) -> None:
    images = [data for _, data in cifake_images[:8]]
    response = requests.post(f"{kserve_server.inference_url}/v1/models/ai_detector:predict",
                             json={"instances": [{"data": base64.b64encode(d).decode()} for d in images]}, timeout=60)
    served = np.array([p["probabilities"]["FAKE"] for p in response.json()["predictions"]])
    assert np.abs(served - offline_fake_probabilities(images)).max() < 1e-3


def test_management_is_on_loopback_and_the_token_check_is_left_to_the_gateway(kserve_server) -> None:
    assert kserve_server.management_url.startswith("http://127.0.0.1:")
    assert kserve_server.describe()[0]["batchSize"] == 1   # KServe's batcher does the batching


def test_v1_explain_returns_gradcam_per_instance(kserve_server, cifake_images) -> None:
    instances = [{"data": base64.b64encode(data).decode()} for _, data in cifake_images[:2]]
    response = requests.post(f"{kserve_server.inference_url}/v1/models/ai_detector:explain",
                             json={"instances": instances}, timeout=60)
    assert response.status_code == 200, response.text
    explanations = response.json()["explanations"]
    assert len(explanations) == 2
    assert all(np.array(e["gradcam"]["map"]).shape == (7, 7) for e in explanations)
