"""One real TorchServe on free 127.0.0.1 ports, shared by the integration modules and started
exactly as `make serve` starts it (archives verified, readiness polled)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Callable

import pytest

from detector.answer import UNCERTAIN, forced_label
from ops.client import DetectorClient
from ops.server import start, stop
from ops.torchserve_config import Ports, TorchServeConfig, render_config
from tests.conftest import MODEL_STORE, REPO


def free_ports(count: int) -> tuple[int, ...]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = tuple(s.getsockname()[1] for s in sockets)
    for s in sockets:
        s.close()
    return ports


def start_server(run_dir: Path, edit_config: Callable[[TorchServeConfig], None] | None = None,
                 model_store: Path = MODEL_STORE, template: Path = REPO / "config.properties") -> DetectorClient:
    """TorchServe from ``template`` (optionally edited) on free loopback ports; stopped on failure."""
    if not (model_store / "SHA256SUMS").exists():
        pytest.fail(f"{model_store} has no archives: run `make build` (make test does it first)")
    config = render_config(template, run_dir / "config.properties", Ports(*free_ports(5)), edit=edit_config)
    try:
        return start(config, model_store, run_dir, timeout=240)
    except Exception:
        stop(run_dir)
        raise


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory, cifake_dir: Path):
    run_dir = tmp_path_factory.mktemp("torchserve")
    client = start_server(run_dir)
    yield client, run_dir
    stop(run_dir)


def metrics_url(client: DetectorClient) -> str:
    """From the config start_server wrote beside the key file (the client knows only inference and management)."""
    return TorchServeConfig.load(Path(client.key_file).parent / "config.properties").addresses.metrics


def check_schema(body: dict) -> None:
    assert body["label"] in ("REAL", "FAKE", UNCERTAIN)
    assert set(body["probabilities"]) == {"REAL", "FAKE"}
    assert abs(body["probabilities"]["REAL"] + body["probabilities"]["FAKE"] - 1.0) < 1e-5
    assert forced_label(body) == max(body["probabilities"], key=body["probabilities"].get)
    if body["label"] == UNCERTAIN:
        abstained = body["abstained"]
        if abstained["reason"] == "out_of_domain":
            assert abstained["domain_score"] == body["domain_score"] < abstained["threshold"]
        elif abstained["reason"] == "compression_sensitive":
            assert abstained["leaning"] == "FAKE" and abstained["fake_after_reencoding"] < abstained["threshold"]
        else:
            assert abstained["reason"] == "low_confidence" and abstained["confidence"] < abstained["threshold"]
