from __future__ import annotations

import json
from pathlib import Path

import pytest

from export.archive import SUMS_NAME, sha256_file
from ops.client import read_keys
from ops.server import ServerError, verify_archives, wait_ready
from ops.torchserve_config import Ports, TorchServeConfig, render_config
from tests.conftest import REPO


def test_tampered_archives_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "ai_detector.mar"
    archive.write_bytes(b"original archive bytes")
    (tmp_path / SUMS_NAME).write_text(f"{sha256_file(archive)}  ai_detector.mar\n")
    assert verify_archives(tmp_path) == ["ai_detector.mar"]
    archive.write_bytes(b"swapped archive bytes")
    with pytest.raises(ServerError, match="does not match"):
        verify_archives(tmp_path)


def test_missing_sums_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ServerError, match="make build"):
        verify_archives(tmp_path)


def test_render_config_moves_only_the_ports(tmp_path: Path) -> None:
    rendered = render_config(REPO / "config.properties", tmp_path / "c.properties", Ports(1, 2, 3, 4, 5)).read_text()
    assert "inference_address=http://127.0.0.1:1\n" in rendered and "metrics_address=http://127.0.0.1:3\n" in rendered
    assert "grpc_inference_port=4\n" in rendered and "grpc_management_port=5\n" in rendered
    assert TorchServeConfig.load(tmp_path / "c.properties").loaded_models == ["ai_detector", "ai_detector_onnx", "ai_detector_int8"]
    original = (REPO / "config.properties").read_text().splitlines()
    assert len([a for a, b in zip(original, rendered.splitlines()) if a != b]) == 5
    with pytest.raises(ValueError, match="need 5 ports"):
        Ports.from_csv("1,2,3")


def test_read_keys_reads_torchserve_key_file_and_explains_a_missing_one(tmp_path: Path) -> None:
    key_file = tmp_path / "key_file.json"
    key_file.write_text(json.dumps({"management": {"key": "m", "expiration time": "x"},
                                    "inference": {"key": "i", "expiration time": "x"}, "API": {"key": "a"}}))
    assert read_keys(key_file) == {"management": "m", "inference": "i", "API": "a"}
    with pytest.raises(FileNotFoundError, match="make serve"):
        read_keys(tmp_path / "absent.json")


def test_wait_ready_treats_a_key_file_still_being_written_as_not_ready(tmp_path: Path) -> None:
    """TorchServe creates key_file.json before it writes the keys: CI once read it empty."""
    key_file = tmp_path / "key_file.json"
    key_file.write_text("")

    class Client:
        polls = 0

        def management(self, method: str, path: str) -> None:
            self.polls += 1
            if self.polls == 2:
                key_file.write_text(json.dumps({"management": {"key": "k"}, "inference": {"key": "i"}}))
            read_keys(key_file)

        def describe(self, model: str) -> list[dict]:
            return [{"workers": [{"status": "READY"}]}]

    client = Client()
    wait_ready(client, ["ai_detector"], tmp_path, timeout=30)
    assert client.polls == 2   # the empty file was a "not yet", not a failure
