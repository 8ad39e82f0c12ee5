"""docker-compose.yml, its host-network override and config.properties keep the secure defaults
(tests/integration/container runs them for real)."""

from __future__ import annotations

import json
import re
import subprocess

import jsonschema
import yaml

from monitoring.dashboard import OUTPUT, render
from ops.torchserve_config import TorchServeConfig
from tests.conftest import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_file_is_valid_against_the_compose_specification_schema() -> None:
    schema = json.loads((REPO / "tests" / "schemas" / "compose_spec.json").read_text())
    jsonschema.validate(COMPOSE, schema)
    broken = {**COMPOSE, "services": {"detector": {**COMPOSE["services"]["detector"], "ports": "8080"}}}
    try:
        jsonschema.validate(broken, schema)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("the schema accepted a malformed ports entry: it is not checking anything")


def test_compose_publishes_on_loopback_only_and_mounts_the_model_store_read_only() -> None:
    for name, service in COMPOSE["services"].items():
        assert service["ports"] and all(port.startswith("127.0.0.1:") for port in service["ports"]), name
    for name in ("detector", "detector-gpu"):
        service = COMPOSE["services"][name]
        assert "./model_store:/app/model_store:ro" in service["volumes"] and "healthcheck" in service
        assert (REPO / service["build"]["dockerfile"]).exists()
    assert COMPOSE["services"]["detector"]["image"] == COMPOSE["services"]["detector-gpu"]["image"]


def test_host_network_override_listens_on_loopback_and_publishes_nothing() -> None:
    class ComposeLoader(yaml.SafeLoader):
        """Reads Compose's ``!reset`` tag (drop the base file's value) as the value it resets to."""

    ComposeLoader.add_constructor("!reset", lambda loader, node: loader.construct_sequence(node))
    override = yaml.load((REPO / "docker-compose.hostnet.yml").read_text(), Loader=ComposeLoader)
    assert set(override["services"]) == {"detector"}
    detector = override["services"]["detector"]
    assert detector["network_mode"] == "host" and detector["ports"] == []
    assert detector["environment"]["AI_DETECTOR_LISTEN_ADDRESS"] == "127.0.0.1"


def test_compose_image_tag_is_the_shipped_model_version() -> None:
    from detector.metadata import ModelMetadata

    assert COMPOSE["services"]["detector"]["image"] == f"ai-detector:{ModelMetadata.load(REPO / 'model').version}"


def test_compose_gpu_profile_reserves_an_nvidia_device() -> None:
    gpu = COMPOSE["services"]["detector-gpu"]
    assert gpu["profiles"] == ["gpu"] and "profiles" not in COMPOSE["services"]["detector"]
    device = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"] and device["count"] == 1


def test_compose_monitoring_services_mount_files_that_exist() -> None:
    for name in ("prometheus", "grafana"):
        service = COMPOSE["services"][name]
        assert service["profiles"] == ["monitoring"]
        for volume in service["volumes"]:
            assert (REPO / volume.split(":")[0]).exists(), volume
    scrape = yaml.safe_load((REPO / "monitoring" / "prometheus.yml").read_text())
    assert "detector:8082" in scrape["scrape_configs"][0]["static_configs"][0]["targets"]


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run([str(REPO / ".venv" / "bin" / "hadolint"), "--config", str(REPO / ".hadolint.yaml"),
                             str(REPO / "docker" / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_installs_from_the_lock_and_runs_unprivileged() -> None:
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert "COPY pyproject.toml uv.lock ./" in dockerfile and "uv sync --frozen" in dockerfile
    assert re.search(r"^USER 10001$", dockerfile, flags=re.MULTILINE)


def test_container_runs_torchserve_with_the_projects_log_config() -> None:
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    entrypoint = (REPO / "docker" / "entrypoint.sh").read_text()
    assert re.search(r"^WORKDIR /app$", dockerfile, flags=re.MULTILINE)
    assert re.search(r"^COPY [^\n]*\blog4j2\.xml \./$", dockerfile, flags=re.MULTILINE)
    assert re.search(r"^exec torchserve .*--log-config /app/log4j2\.xml$", entrypoint, flags=re.MULTILINE)


def test_grafana_dashboard_is_the_generated_one() -> None:
    assert OUTPUT.read_text() == render(), "run: python -m monitoring.dashboard"
    panels = json.loads(OUTPUT.read_text())["panels"]
    assert len(panels) >= 8 and all(p["targets"] for p in panels)


def test_config_properties_binds_loopback_and_locks_the_control_plane() -> None:
    settings = TorchServeConfig.load(REPO / "config.properties")
    for key in ("inference_address", "management_address", "metrics_address"):
        assert settings[key].startswith("http://127.0.0.1:")
    assert settings["grpc_inference_address"] == settings["grpc_management_address"] == "127.0.0.1"
    assert settings["enable_model_api"] == "false" and settings["install_py_dep_per_model"] == "false"
    assert "disable_token_authorization" not in settings
    assert "http" not in settings["allowed_urls"]


def test_config_routes_the_version_of_the_shipped_model() -> None:
    """TorchServe refuses a models= entry whose version key differs from the archive's (metadata.json's)."""
    from detector.metadata import ModelMetadata

    models = TorchServeConfig.load(REPO / "config.properties").models
    version = ModelMetadata.load(REPO / "model").version
    assert {name: list(versions) for name, versions in models.items()} == \
        {"ai_detector": [version], "ai_detector_onnx": [version], "ai_detector_int8": [version]}
