"""docker-compose.yml and config.properties keep the secure defaults (no Docker engine here to run them)."""

from __future__ import annotations

import re

import yaml

from tests.conftest import REPO


def test_compose_publishes_on_loopback_only_and_mounts_the_model_store_read_only() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    service = compose["services"]["detector"]
    assert service["ports"] and all(port.startswith("127.0.0.1:") for port in service["ports"])
    assert "./model_store:/app/model_store:ro" in service["volumes"]
    assert (REPO / service["build"]["dockerfile"]).exists() and "healthcheck" in service


def test_config_properties_binds_loopback_and_locks_the_control_plane() -> None:
    text = (REPO / "config.properties").read_text()
    settings = dict(re.findall(r"^(\w+)=(.*)$", text, flags=re.MULTILINE))
    for key in ("inference_address", "management_address", "metrics_address"):
        assert settings[key].startswith("http://127.0.0.1:")
    assert settings["grpc_inference_address"] == settings["grpc_management_address"] == "127.0.0.1"
    assert settings["enable_model_api"] == "false" and settings["install_py_dep_per_model"] == "false"
    assert "disable_token_authorization" not in settings
    assert "http" not in settings["allowed_urls"]
