"""The secure defaults, proved against real TorchServe processes on 127.0.0.1:
keys required, control plane closed, no remote archives (even with the model API turned on),
nothing listening beyond loopback."""

from __future__ import annotations

import json
import threading
from dataclasses import astuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
import requests

from ops.client import read_keys
from ops.oip import OipGrpcClient
from ops.server import stop
from ops.torchserve_config import TorchServeConfig, open_model_api_without_models
from tests.integration.conftest import metrics_url, start_server

LOOPBACK_HEX = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}


def _listening_addresses(port: int) -> set[str]:
    """Local addresses (kernel hex) of the sockets in LISTEN state on ``port``, IPv4 and IPv6."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:
                addresses.add(address)
    return addresses


def test_every_port_listens_on_loopback_only(server) -> None:
    """HTTP inference, management and metrics, and the gRPC pair TorchServe always opens."""
    client, run_dir = server
    config = TorchServeConfig.load(run_dir / "config.properties")
    assert (client.inference_url, client.management_url) == (config.addresses.inference, config.addresses.management)
    for port in astuple(config.ports):
        addresses = _listening_addresses(port)
        assert addresses and addresses <= LOOPBACK_HEX, (port, addresses)


def _refused_for_the_token(response: requests.Response) -> bool:
    """TorchServe 0.12 answers a missing or wrong key with 400 and a token error (not a 401)."""
    return response.status_code in (400, 401, 403) and "token" in response.text.lower()


def test_requests_without_the_right_key_are_refused(server, cifake_images) -> None:
    client, _ = server
    image = cifake_images[0][1]
    keys = read_keys(client.key_file)
    predictions, models = f"{client.inference_url}/predictions/ai_detector", f"{client.management_url}/models"
    wrong = {"Authorization": "Bearer not-the-key"}
    as_inference = {"Authorization": f"Bearer {keys['inference']}"}
    as_management = {"Authorization": f"Bearer {keys['management']}"}
    refused = [requests.post(predictions, data=image, timeout=30), requests.get(models, timeout=30),
               requests.get(models, headers=wrong, timeout=30), requests.post(predictions, data=image, headers=wrong, timeout=30),
               # the inference key does not open the management API, and vice versa
               requests.get(models, headers=as_inference, timeout=30),
               requests.post(predictions, data=image, headers=as_management, timeout=30)]
    for response in refused:
        assert _refused_for_the_token(response), (response.request.url, response.status_code, response.text)
    assert requests.post(predictions, data=image, headers=as_inference, timeout=30).status_code == 200


GRPC_MANAGEMENT = "/org.pytorch.serve.grpc.management.ManagementAPIsService/"


def test_grpc_needs_the_right_key_and_cannot_register_models(server, cifake_images) -> None:
    """Both gRPC ports (TorchServe's inference and Open Inference services on one, management on the other) refuse
    calls without their own key, and the management key cannot register a model (model API off). The management
    calls go as raw bytes (an empty message is every request's defaults): no TorchServe proto is copied here."""
    client, run_dir = server
    ports = TorchServeConfig.load(run_dir / "config.properties").ports
    keys = read_keys(client.key_file)
    with grpc.insecure_channel(f"127.0.0.1:{ports.grpc_management}") as channel:
        def management(method: str, key: str | None) -> bytes:
            call = channel.unary_unary(GRPC_MANAGEMENT + method)   # no serializers: bytes in, bytes out
            return call(b"", timeout=30, metadata=[("authorization", f"Bearer {key}")] if key else [])

        for key in (None, "not-the-key", keys["inference"]):
            with pytest.raises(grpc.RpcError) as denied:
                management("ListModels", key)
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert b'"models"' in management("ListModels", keys["management"])   # the management key is accepted
        with pytest.raises(grpc.RpcError) as disabled:
            management("RegisterModel", keys["management"])
        assert disabled.value.code() == grpc.StatusCode.PERMISSION_DENIED and "disabled" in disabled.value.details()
    target = f"127.0.0.1:{ports.grpc_inference}"
    for authorization, key_file in ((False, None), (True, _key_file_with(run_dir, "management"))):
        with pytest.raises(grpc.RpcError) as denied:
            OipGrpcClient(target, key_file=key_file, authorization=authorization).predict(cifake_images[0][1])
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert OipGrpcClient(target, key_file=client.key_file).predict(cifake_images[0][1])["label"]


def _key_file_with(run_dir: Path, kind: str) -> Path:
    """A key file whose inference key is the ``kind`` key (to send the wrong key through a client)."""
    keys = json.loads((run_dir / "key_file.json").read_text())
    keys["inference"] = keys[kind]
    path = run_dir / f"key_file_as_{kind}.json"
    path.write_text(json.dumps(keys))
    return path


def test_model_registration_is_disabled_by_default(server) -> None:
    client, _ = server
    headers = {"Authorization": f"Bearer {read_keys(client.key_file)['management']}"}
    for url in ("ai_detector.mar", "https://example.com/evil.mar"):
        response = requests.post(f"{client.management_url}/models", params={"url": url}, headers=headers, timeout=30)
        assert response.status_code in (400, 403, 405), response.text
        assert "disabled" in response.text.lower() or "not allowed" in response.text.lower(), response.text
    unregister = requests.delete(f"{client.management_url}/models/ai_detector", headers=headers, timeout=30)
    assert unregister.status_code in (400, 403, 405)
    assert client.describe("ai_detector")[0]["workers"]


@pytest.fixture(scope="module")
def open_api_server(tmp_path_factory: pytest.TempPathFactory, cifake_dir: Path):
    """A second server with the model API turned ON (an operator's choice) and no models loaded."""
    run_dir = tmp_path_factory.mktemp("torchserve_open_api")
    client = start_server(run_dir, open_model_api_without_models)
    yield client
    stop(run_dir)


@pytest.fixture
def bait_server():
    """A local HTTP server that would hand out an archive: it counts the requests it gets."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"PK\x05\x06" + bytes(18))

        def log_message(self, *args) -> None:
            pass

    bait = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=bait.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{bait.server_address[1]}", hits
    bait.shutdown()


def test_remote_archive_urls_are_refused_even_with_the_model_api_on(open_api_server, bait_server) -> None:
    client = open_api_server
    bait_url, hits = bait_server
    headers = {"Authorization": f"Bearer {read_keys(client.key_file)['management']}"}

    def register(url: str) -> requests.Response:
        return requests.post(f"{client.management_url}/models", params={"url": url, "initial_workers": 0},
                             headers=headers, timeout=60)

    for url in (f"{bait_url}/evil.mar", f"{bait_url.replace('http', 'https')}/evil.mar", "../model/evil.mar",
                "file:///etc/passwd"):
        response = register(url)
        assert 400 <= response.status_code < 500, (url, response.status_code, response.text)
    assert hits == []  # no SSRF: TorchServe never fetched the URL
    # the API itself works: an archive from the local model store registers
    assert register("ai_detector_onnx.mar").status_code == 200
    assert client.describe("ai_detector_onnx")[0]["modelName"] == "ai_detector_onnx"


def test_health_probes_ping_needs_the_inference_key_metrics_does_not(server) -> None:
    client, _ = server
    assert _refused_for_the_token(requests.get(f"{client.inference_url}/ping", timeout=30))
    headers = {"Authorization": f"Bearer {read_keys(client.key_file)['inference']}"}
    ping = requests.get(f"{client.inference_url}/ping", headers=headers, timeout=30)
    assert ping.status_code == 200 and ping.json() == {"status": "Healthy"}
    assert requests.get(f"{metrics_url(client)}/metrics", timeout=30).status_code == 200
