"""A real TorchServe on 127.0.0.1, started from the built archives exactly as `make serve` does."""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from detector.answer import OperatingPoint, forced_label
from detector.pipeline import DetectorPipeline
from loadtest.locust_runner import run_locust
from ops.client import DetectorClient, read_keys
from ops.served_accuracy import main as served_accuracy_main
from training.evaluate import evaluate
from monitoring.dashboard import metric_names
from tests.conftest import MODEL_DIR, REPO, encode
from tests.integration.conftest import check_schema, metrics_url

MODELS = ("ai_detector", "ai_detector_onnx")


def offline_fake_probabilities(images: list[bytes]) -> np.ndarray:
    offline = DetectorPipeline.load(MODEL_DIR, point=OperatingPoint())
    return offline.probabilities(images)[:, 1]   # probabilities do not depend on the domain gate


@pytest.mark.parametrize("model", MODELS)
def test_served_predictions_match_offline_predictions(server, cifake_images, model: str) -> None:
    client, _ = server
    images = [data for _, data in cifake_images]
    with ThreadPoolExecutor(8) as pool:  # concurrent, so dynamic batching groups them
        bodies = list(pool.map(lambda d: client.predict(d, model=model), images))
    for body in bodies:
        check_schema(body)
    served = np.array([b["probabilities"]["FAKE"] for b in bodies])
    assert np.abs(served - offline_fake_probabilities(images)).max() < 1e-3
    accuracy = np.mean([forced_label(b) == truth for b, (truth, _) in zip(bodies, cifake_images)])
    assert accuracy >= 0.9


@pytest.mark.parametrize("model", MODELS)
def test_explanations_endpoint_returns_gradcam_for_the_served_prediction(server, cifake_images, model: str) -> None:
    client, _ = server
    _, data = cifake_images[-1]
    explained, predicted = client.explain(data, model=model), client.predict(data, model=model)
    check_schema(explained)
    assert explained["probabilities"] == pytest.approx(predicted["probabilities"], abs=1e-6)
    cam = np.array(explained["gradcam"]["map"])
    assert cam.shape == (7, 7) and cam.max() == pytest.approx(1.0, abs=1e-3) and cam.std() > 0.01
    assert explained["gradcam"]["png"] and "gradcam" not in predicted


def test_int8_model_agrees_with_fp32_labels(server, cifake_images) -> None:
    client, _ = server
    images = [data for _, data in cifake_images]
    with ThreadPoolExecutor(8) as pool:
        int8 = list(pool.map(lambda d: client.predict(d, model="ai_detector_int8"), images))
    for body in int8:
        check_schema(body)
    offline = offline_fake_probabilities(images)
    agreement = np.mean([(forced_label(b) == "FAKE") == (p > 0.5) for b, p in zip(int8, offline)])
    assert agreement >= 0.95 and np.abs(np.array([b["probabilities"]["FAKE"] for b in int8]) - offline).max() < 0.2


def test_high_resolution_photo_is_aligned_and_classified(server, cifake_images) -> None:
    from PIL import Image
    import io

    client, _ = server
    small = Image.open(io.BytesIO(cifake_images[0][1]))
    big = encode(small.resize((3000, 3000), Image.Resampling.BICUBIC), "JPEG", quality=92)
    body = client.predict(big)
    check_schema(body)
    assert body["probabilities"]["FAKE"] == pytest.approx(float(offline_fake_probabilities([big])[0]), abs=1e-3)


def test_bad_inputs_fail_alone_inside_concurrent_batches(server, cifake_images) -> None:
    client, _ = server
    good = [data for _, data in cifake_images[:12]]
    bad = [b"", b"not an image at all", cifake_images[0][1][:200], b"<svg xmlns='http://www.w3.org/2000/svg'/>"]
    payloads = [(d, True) for d in good] + [(d, False) for d in bad]
    payloads = payloads[::2] + payloads[1::2]
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda p: client.predict_response(p[0]), payloads))
    for (_, is_good), response in zip(payloads, responses):
        if is_good:
            assert response.status_code == 200
            check_schema(response.json())
        else:
            assert 400 <= response.status_code < 500
            error = response.json()
            assert set(error) == {"code", "type", "message"} and error["code"] == response.status_code


def test_multipart_and_base64_json_requests(server, cifake_images) -> None:
    client, _ = server
    image = cifake_images[-1][1]
    url = f"{client.inference_url}/predictions/ai_detector"
    headers = {"Authorization": f"Bearer {read_keys(client.key_file)['inference']}"}
    multipart = requests.post(url, files={"data": ("x.jpg", image, "image/jpeg")}, headers=headers, timeout=30)
    as_json = requests.post(url, json={"image": base64.b64encode(image).decode()}, headers=headers, timeout=30)
    raw = client.predict(image)
    assert multipart.status_code == as_json.status_code == 200
    assert multipart.json()["probabilities"] == as_json.json()["probabilities"] == raw["probabilities"]


def test_scale_workers_through_the_management_api(server) -> None:
    client, _ = server
    client.scale_workers(2)
    workers = client.describe()[0]["workers"]
    assert len(workers) == 2 and all(w["status"] == "READY" for w in workers)
    client.scale_workers(1)
    assert len(client.describe()[0]["workers"]) == 1
    described = client.describe()[0]
    assert described["batchSize"] == 8 and described["maxBatchDelay"] == 5


def _readme_block(marker: str) -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(rf"<!-- {marker} -->\s*```\w+\n(.*?)```", text, flags=re.DOTALL)
    assert match, f"README block {marker} missing"
    return match.group(1)


def _for_test_server(code: str, client: DetectorClient, run_dir: Path, image: Path) -> str:
    key_file = str(run_dir / "key_file.json")
    return (code.replace("run/key_file.json", key_file)
                .replace("http://127.0.0.1:8080", client.inference_url)
                .replace("http://127.0.0.1:8081", client.management_url)
                .replace(".venv/bin/python -m ops.cli", f"{REPO}/.venv/bin/python -m ops.cli --inference-url "
                         f"{client.inference_url} --management-url {client.management_url} --key-file {key_file}")
                .replace(".venv/bin/python -m ops.classify", f"{REPO}/.venv/bin/python -m ops.classify --url "
                         f"{client.inference_url} --key-file {key_file}")
                .replace("image.jpg", str(image)))


def test_readme_operator_block_works(server, tmp_path: Path) -> None:
    client, run_dir = server
    block = _for_test_server(_readme_block("readme-ops"), client, run_dir, tmp_path / "unused.jpg")
    try:
        output = subprocess.run(["bash", "-euo", "pipefail", "-c", block], capture_output=True, text=True,
                                timeout=300, cwd=REPO)
        assert output.returncode == 0, output.stderr
        assert '"modelName": "ai_detector"' in output.stdout and "READY" in output.stdout
        assert len(client.describe()[0]["workers"]) == 2
    finally:
        client.scale_workers(1)
        client.scale_workers(1, 4)


def test_readme_curl_and_python_examples_work(server, cifake_images, tmp_path: Path) -> None:
    client, run_dir = server
    image = tmp_path / "image.jpg"
    image.write_bytes(cifake_images[0][1])
    curl = _for_test_server(_readme_block("readme-curl"), client, run_dir, image)
    output = subprocess.run(["bash", "-euo", "pipefail", "-c", curl], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert output.returncode == 0, output.stderr
    check_schema(json.loads(output.stdout))
    python = _for_test_server(_readme_block("readme-python"), client, run_dir, image)
    output = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-c", python], capture_output=True, text=True,
                            timeout=60, cwd=REPO)
    assert output.returncode == 0, output.stderr
    check_schema(ast.literal_eval(output.stdout.strip().splitlines()[-1]))


def test_readme_explanation_and_classify_block_works(server, cifake_images, tmp_path: Path) -> None:
    client, run_dir = server
    image = tmp_path / "image.jpg"
    image.write_bytes(cifake_images[-1][1])
    block = _for_test_server(_readme_block("readme-explain"), client, run_dir, image)
    output = subprocess.run(["bash", "-euo", "pipefail", "-c", block], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert output.returncode == 0, output.stderr
    explanation = json.loads((tmp_path / "explanation.json").read_text())
    check_schema(explanation)
    assert len(explanation["gradcam"]["map"]) == 7
    assert json.loads((tmp_path / "results.json").read_text())[0]["label"] == explanation["label"]
    assert (tmp_path / "results.csv").exists() and (tmp_path / "heatmaps" / "image.gradcam.png").exists()


def test_locust_scenario_runs_clean_against_the_server(server, tmp_path: Path) -> None:
    """The locustfile as run by hand: images sampled from CIFAKE, a plain -t 6s, no measuring window."""
    client, run_dir = server
    stats = run_locust(client.inference_url, run_dir / "key_file.json", "ai_detector", users=2, seconds=6,
                       prefix=tmp_path / "run", window=False, log=tmp_path / "locust.log")
    assert stats.total.requests > 10 and stats.total.failures == 0, (tmp_path / "locust.log").read_text()[-2000:]


def test_metrics_port_serves_the_handlers_own_metrics_without_a_key(server, cifake_images) -> None:
    client, _ = server
    for _, data in cifake_images[:4]:
        client.predict(data)
    assert client.predict_response(b"<html>not an image</html>").status_code == 415
    response = requests.get(f"{metrics_url(client)}/metrics", timeout=30)
    assert response.status_code == 200 and "# TYPE" in response.text
    lines = response.text.splitlines()

    def value(prefix: str, *needles: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines
                   if line.startswith(prefix) and 'ModelName="ai_detector"' in line and all(n in line for n in needles))

    assert value("BatchSize_count") >= 5 and value("BatchSize_sum") >= 5
    assert value("PreprocessMs_count") >= 5 and value("InferenceMs_count") >= 4
    assert sum(value("Predictions", f'Label="{label}"') for label in ("REAL", "FAKE", "UNCERTAIN")) >= 4
    assert value("InputErrors", 'ErrorType="UnsupportedFormat"') >= 1
    exposed = {re.split(r"[{ ]", line, maxsplit=1)[0] for line in lines if line and not line.startswith("#")}
    for name, kind in re.findall(r"^# TYPE (\w+) (\w+)$", response.text, flags=re.MULTILINE):  # declared, maybe no sample yet
        exposed |= {name} | ({f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram" else set())
    assert metric_names() - exposed == set(), "the Grafana dashboard queries metrics the server does not expose"


def test_server_logs_one_access_line_per_request_and_no_per_request_debug(server, cifake_images) -> None:
    """The project's log4j2.xml replaces TorchServe's DEBUG-level default (about 15 lines per request)."""
    client, run_dir = server
    logs = run_dir / "logs"
    access_before = len((logs / "access_log.log").read_text().splitlines())
    ts_before = len((logs / "ts_log.log").read_text().splitlines())
    for _, data in cifake_images[:6]:
        client.predict(data)
    access = (logs / "access_log.log").read_text().splitlines()[access_before:]
    assert sum("POST /predictions/ai_detector " in line and '" 200 ' in line for line in access) == 6
    new_server_lines = (logs / "ts_log.log").read_text().splitlines()[ts_before:]
    assert not [line for line in new_server_lines if "[DEBUG]" in line or "[METRICS]" in line or "ACCESS_LOG" in line]


def test_served_accuracy_equals_offline_accuracy_on_a_test_sample(server, cifake_dir: Path, tmp_path: Path) -> None:
    """ops.served_accuracy through the real server, both backends, on 300 official test images."""
    client, _ = server
    offline = tmp_path / "test_report.json"
    offline.write_text(json.dumps(evaluate(REPO / "model", cifake_dir, "test", 300, 11)[0]))
    code = served_accuracy_main(["--data", str(cifake_dir), "--images", "300", "--seed", "11", "--offline-report",
                                 str(offline), "--url", client.inference_url, "--key-file", str(client.key_file),
                                 "--out", str(tmp_path)])
    rows = json.loads((tmp_path / "served_accuracy.json").read_text())["rows"]
    assert [r["model"] for r in rows] == list(MODELS)
    for row in rows:
        assert row["images"] == 300 and row["failures"] == 0 and abs(row["gap_pt"]) <= 0.1, row
        assert row["served_accuracy"] >= 0.9
    assert code == 0 and "| `ai_detector_onnx` | 300 |" in (tmp_path / "served_accuracy.md").read_text()
