"""Operator controls against real TorchServe processes: the ops CLI (models, describe, scale,
register with batching settings) and model versions (route explicitly, switch default, roll back)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from detector.metadata import ModelMetadata
from export.archive import build_archive, stage_extra_files, write_sums
from export.export import ONNX_NAME
from ops.client import DetectorClient
from ops.server import stop
from tests.conftest import MODEL_STORE, REPO
from ops.torchserve_config import open_model_api_without_models
from tests.integration.conftest import start_server


def ops(client: DetectorClient, *args: str) -> str:
    """Run the ops CLI as an operator would, against this test's server."""
    command = [sys.executable, "-m", "ops.cli", "--inference-url", client.inference_url,
               "--management-url", client.management_url, "--key-file", str(client.key_file), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=REPO)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_cli_lists_describes_and_scales_workers(server) -> None:
    client, _ = server
    names = {m["modelName"] for m in json.loads(ops(client, "models"))}
    assert names == {"ai_detector", "ai_detector_onnx", "ai_detector_int8"}
    described = json.loads(ops(client, "scale", "ai_detector", "--min", "2", "--max", "3"))[0]
    assert (described["minWorkers"], described["maxWorkers"]) == (2, 3)
    assert len(described["workers"]) == 2 and all(w["status"] == "READY" for w in described["workers"])
    table = ops(client, "describe", "ai_detector", "--table")
    assert table.count("READY") == 2 and "batch" in table.splitlines()[0]
    described = json.loads(ops(client, "scale", "ai_detector", "--min", "1", "--max", "1"))[0]
    assert len(described["workers"]) == 1
    described = json.loads(ops(client, "scale", "ai_detector", "--min", "1", "--max", "4"))[0]  # as configured
    assert len(described["workers"]) == 1 and described["maxWorkers"] == 4


@pytest.fixture(scope="module")
def versioned(tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path, cifake_dir: Path):
    """A server with the model API on and a store holding two versions of ai_detector:
    the TorchScript archive as built, and the same weights on ONNX Runtime as version ``<v>-onnx``."""
    store = tmp_path_factory.mktemp("store")
    shutil.copy2(MODEL_STORE / "ai_detector.mar", store / "ai_detector.mar")
    base = ModelMetadata.load(artifacts_dir).version
    extra = stage_extra_files(tmp_path_factory.mktemp("stage") / "extra", artifacts_dir / "metadata.json")
    second = build_archive("ai_detector", f"{base}-onnx", artifacts_dir / ONNX_NAME, extra, store,
                           file_name="ai_detector_onnx_version.mar")
    write_sums(store, [store / "ai_detector.mar", second])
    run_dir = tmp_path_factory.mktemp("torchserve_versions")
    client = start_server(run_dir, open_model_api_without_models, model_store=store)
    yield client, base
    stop(run_dir)


def test_register_with_batching_settings_then_route_switch_and_roll_back(versioned, cifake_images) -> None:
    client, base = versioned
    image = cifake_images[0][1]
    ops(client, "register", "ai_detector.mar", "--batch-size", "4", "--max-batch-delay", "20")
    ops(client, "register", "ai_detector_onnx_version.mar", "--batch-size", "16", "--max-batch-delay", "2")
    described = {d["modelVersion"]: d for d in json.loads(ops(client, "describe", "ai_detector", "--version", "all"))}
    assert set(described) == {base, f"{base}-onnx"}
    assert (described[base]["batchSize"], described[base]["maxBatchDelay"]) == (4, 20)
    assert (described[f"{base}-onnx"]["batchSize"], described[f"{base}-onnx"]["maxBatchDelay"]) == (16, 2)
    assert client.describe("ai_detector")[0]["modelVersion"] == base  # the first registered is the default

    # routed explicitly, each version answers and names itself
    first = client.predict(image, version=base)
    second = client.predict(image, version=f"{base}-onnx")
    assert (first["model_version"], first["backend"]) == (base, "torchscript")
    assert (second["model_version"], second["backend"]) == (f"{base}-onnx", "onnx")
    assert abs(first["probabilities"]["FAKE"] - second["probabilities"]["FAKE"]) < 1e-3
    assert client.predict(image)["model_version"] == base

    ops(client, "set-default", "ai_detector", f"{base}-onnx")  # switch
    assert client.predict(image)["model_version"] == f"{base}-onnx"
    assert client.describe("ai_detector")[0]["modelVersion"] == f"{base}-onnx"
    ops(client, "set-default", "ai_detector", base)  # roll back
    assert client.predict(image)["model_version"] == base

    ops(client, "unregister", "ai_detector", f"{base}-onnx")
    assert [d["modelVersion"] for d in client.describe("ai_detector", "all")] == [base]
