"""Every request answered: the input battery through a real TorchServe, concurrently with valid
images, and a worker SIGKILLed under Locust load with every request counted."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from loadtest.soak import run_soak
from ops.client import read_keys
from tests.input_battery import OK, configured_limits, Case, build_battery
from tests.integration.conftest import check_schema


def _send(url: str, key: str, case: Case) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if case.multipart:
        return requests.post(url, files=case.multipart, headers=headers, timeout=60)
    return requests.post(url, data=case.body, headers={**headers, "Content-Type": case.content_type}, timeout=60)


@pytest.mark.parametrize("model", ["ai_detector", "ai_detector_onnx"])
def test_input_battery_through_torchserve(server, cifake_images, model: str) -> None:
    client, _ = server
    url, key = f"{client.inference_url}/predictions/{model}", read_keys(client.key_file)["inference"]
    cases = build_battery(cifake_images[0][1], *configured_limits())
    valid = [Case(f"valid {i}", data, OK, "image/jpeg") for i, (_, data) in enumerate(cifake_images)]
    mixed = [c for pair in zip(cases, valid) for c in pair] + cases[len(valid):]
    with ThreadPoolExecutor(16) as pool:  # concurrent: bad and good requests share dynamic batches
        responses = list(pool.map(lambda c: _send(url, key, c), mixed))
    for case, response in zip(mixed, responses):
        assert response.status_code == case.expect, f"{case.name}: {response.status_code} {response.text[:300]}"
        if not case.handler_checked:
            continue  # answered by TorchServe's HTTP layer (a bare 413), documented in SECURITY.md
        assert response.headers.get("content-type") == "application/json", f"{case.name}: {response.headers}"
        body = response.json()
        if case.expect == OK:
            check_schema(body)
        else:
            assert {"code", "type", "message"} <= set(body), f"{case.name}: {body}"
            assert case.error_type is None or body["type"] == case.error_type, f"{case.name}: {body}"


def test_worker_sigkill_under_locust_load_loses_nothing(server, cifake_images, tmp_path: Path) -> None:
    client, run_dir = server
    images = [data for _, data in cifake_images]
    report = run_soak(client, run_dir / "key_file.json", images, tmp_path, seconds=30, users=4,
                      kill_worker_at=8, sample_every=2)
    print((tmp_path / "soak.md").read_text())
    assert report.checks(max_memory_growth_pct=None) == []
    assert report.recovery_s is not None   # a new worker came up within the soak's bound (RECOVERY_BOUND_S)
    assert report.locust_requests > 0 and report.client.sent > 0
    assert report.client.ok == report.client.sent  # the retrying client saw no failure at all
    assert client.describe()[0]["workers"][0]["status"] == "READY"
