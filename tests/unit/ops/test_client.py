"""DetectorClient's retry policy against a scripted local HTTP server (no TorchServe needed)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from ops.client import DetectorClient, ImageRefused, backoff_delay, is_retriable

WORKER_DIED = (500, {"code": 500, "type": "InternalServerException", "message": "Worker died."})
KILLED_WORKER = (507, {"code": 507, "type": "InternalServerException", "message": "Worker died."})
TOO_LARGE = (413, {"code": 413, "type": "TooLarge", "message": "image is 30000x30000; limits are ..."})
# TorchServe's answer when a model's job queue (job_queue_size) is full: "no worker" means "queue full"
NO_WORKER = (503, {"code": 503, "type": "ServiceUnavailableException",
                   "message": "Model has no worker to serve inference request. Please use scale workers API to add workers."})
OK = (200, {"label": "REAL", "probabilities": {"REAL": 0.9, "FAKE": 0.1}})


@pytest.fixture
def scripted(tmp_path: Path):
    """A server answering POSTs from a script of (status, body); returns (client, script, hits)."""
    script: list[tuple[int, dict]] = []
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers["Content-Length"]))
            hits.append(self.headers["Authorization"])
            status, body = script.pop(0)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    key_file = tmp_path / "key_file.json"
    key_file.write_text(json.dumps({"inference": {"key": "inf-key"}, "management": {"key": "mgmt-key"}}))
    url = f"http://127.0.0.1:{server.server_address[1]}"
    yield DetectorClient(url, url, key_file=key_file, retries=3, backoff=0.01), script, hits
    server.shutdown()


def test_worker_died_and_overload_answers_are_retried_until_a_prediction(scripted) -> None:
    client, script, hits = scripted
    script.extend([WORKER_DIED, KILLED_WORKER, NO_WORKER, OK])
    assert client.predict(b"image")["label"] == "REAL"
    assert len(hits) == 4 and client.retried == 3 and set(hits) == {"Bearer inf-key"}


def test_input_errors_are_not_retried_and_raise_the_typed_refusal(scripted) -> None:
    client, script, hits = scripted
    script.append(TOO_LARGE)
    with pytest.raises(ImageRefused) as refused:
        client.predict(b"image")
    assert (refused.value.status, refused.value.kind) == (413, "TooLarge") and refused.value.response.status_code == 413
    assert isinstance(refused.value, requests.HTTPError)   # callers catching HTTPError still catch it
    assert len(hits) == 1 and client.retried == 0


def test_failures_that_are_not_refusals_stay_plain_http_errors(scripted) -> None:
    client, script, _ = scripted
    wrong_key = {"code": 400, "type": "InvalidKeyException",
                 "message": "Token Authorization failed. Token either incorrect, expired, or not provided correctly"}
    not_found = {"code": 404, "type": "ModelNotFoundException", "message": "Model not found: nope"}
    script.extend([(400, wrong_key), (404, not_found), (400, {"code": 400, "type": "InvalidKeyException"}),
                   (404, {"message": "no model"})])
    for _ in range(4):
        with pytest.raises(requests.HTTPError) as failed:
            client.predict(b"image")
        assert not isinstance(failed.value, ImageRefused)


def test_retries_are_bounded(scripted) -> None:
    client, script, hits = scripted
    script.extend([NO_WORKER] * 4)
    assert client.predict_response(b"image").status_code == 503
    assert len(hits) == 4  # 1 try + 3 retries


def test_queue_full_answers_are_retried_with_doubling_jittered_backoff(scripted, monkeypatch) -> None:
    client, script, _ = scripted
    script.extend([NO_WORKER] * 3 + [OK])
    slept: list[float] = []
    monkeypatch.setattr("ops.client.time.sleep", slept.append)
    assert client.predict(b"image")["label"] == "REAL"
    assert len(slept) == 3
    for attempt, seconds in enumerate(slept):
        assert client.backoff * 2 ** attempt / 2 <= seconds <= client.backoff * 2 ** attempt


def test_backoff_jitter_spreads_clients_turned_away_together() -> None:
    delays = {round(backoff_delay(2, 0.25), 6) for _ in range(50)}
    assert len(delays) > 40 and min(delays) >= 0.5 and max(delays) <= 1.0


def test_is_retriable_reads_torchserve_worker_death() -> None:
    assert is_retriable(500, json.dumps(WORKER_DIED[1])) and is_retriable(413, json.dumps(KILLED_WORKER[1]))
    assert is_retriable(413, '{"message": "Worker died."}')  # exit code 137 read as OOM
    assert not is_retriable(413, json.dumps(TOO_LARGE[1])) and not is_retriable(400, "Worker died.")
    assert not is_retriable(500, "Internal error") and is_retriable(503, "")
