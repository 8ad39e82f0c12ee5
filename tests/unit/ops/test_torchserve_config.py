"""ops.torchserve_config on the repository's real config.properties: it reads what TorchServe reads,
writes back only the lines it was asked to change, and refuses what it cannot read."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.torchserve_config import (ConfigError, Ports, TorchServeConfig, open_model_api_without_models,
                                   render_config)
from tests.conftest import REPO

SHIPPED = REPO / "config.properties"
KSERVE = REPO / "deploy" / "kserve" / "config.properties"


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    return [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]


@pytest.mark.parametrize("path", [SHIPPED, KSERVE], ids=["shipped", "kserve"])
def test_loading_and_writing_back_changes_nothing(path: Path, tmp_path: Path) -> None:
    config = TorchServeConfig.load(path)
    assert config.write(tmp_path / "c.properties").read_text() == path.read_text()
    config.set_models(config.models)   # re-rendered models= is written as the shipped file writes it
    assert config.text() == path.read_text()


def test_reads_values_as_torchserve_does() -> None:
    config = TorchServeConfig.load(SHIPPED)
    assert config.addresses.inference == "http://127.0.0.1:8080"
    assert config.ports == Ports(8080, 8081, 8082, 7070, 7071)
    assert config.get("allowed_urls") == r"^file:///.*\.mar$"   # Java unescapes the file's \\.
    assert config.get("disable_token_authorization") is None and "job_queue_size" in config
    assert config.keys()[:3] == ["inference_address", "management_address", "metrics_address"]
    assert config.loaded_models == ["ai_detector", "ai_detector_onnx", "ai_detector_int8"]
    models = config.models
    assert list(models) == config.loaded_models
    assert models["ai_detector_int8"]["0.4.5"]["batchSize"] == 32 and models["ai_detector"]["0.4.5"]["batchSize"] == 8


def test_moving_ports_rewrites_only_the_address_and_port_lines(tmp_path: Path) -> None:
    config = TorchServeConfig.load(SHIPPED)
    config.move_to_loopback(Ports(18080, 18081, 18082, 17070, 17071))
    assert changed_lines(SHIPPED.read_text(), config.text()) == [
        ("inference_address=http://127.0.0.1:8080", "inference_address=http://127.0.0.1:18080"),
        ("management_address=http://127.0.0.1:8081", "management_address=http://127.0.0.1:18081"),
        ("metrics_address=http://127.0.0.1:8082", "metrics_address=http://127.0.0.1:18082"),
        ("grpc_inference_port=7070", "grpc_inference_port=17070"),
        ("grpc_management_port=7071", "grpc_management_port=17071")]
    written = TorchServeConfig.load(config.write(tmp_path / "c.properties"))
    assert written.ports == Ports(18080, 18081, 18082, 17070, 17071)
    assert written.addresses.metrics == "http://127.0.0.1:18082"


def test_kserve_config_moves_off_its_pod_addresses(tmp_path: Path) -> None:
    rendered = TorchServeConfig.load(render_config(KSERVE, tmp_path / "c.properties", Ports(1, 2, 3, 4, 5)))
    assert rendered.addresses.inference == "http://127.0.0.1:1" and rendered.addresses.metrics == "http://127.0.0.1:3"
    assert rendered.get("service_envelope") == "kserve" and rendered.loaded_models == ["ai_detector"]


def test_models_are_dropped_and_added_with_load_models_kept_in_step(tmp_path: Path) -> None:
    config = TorchServeConfig.load(SHIPPED)
    config.remove_model("ai_detector_onnx")
    config.add_model("stock_baseline", like="ai_detector", version="1.0", batchSize=1, maxWorkers=1)
    written = TorchServeConfig.load(config.write(tmp_path / "c.properties"))
    assert written.loaded_models == ["ai_detector", "ai_detector_int8", "stock_baseline"]
    assert written.get("load_models") == "ai_detector.mar,ai_detector_int8.mar,stock_baseline.mar"
    models = written.models
    assert list(models) == ["ai_detector", "ai_detector_int8", "stock_baseline"]
    shipped = TorchServeConfig.load(SHIPPED).models["ai_detector"]["0.4.5"]
    assert models["stock_baseline"] == {"1.0": {**shipped, "marName": "stock_baseline.mar", "batchSize": 1, "maxWorkers": 1}}
    assert models["ai_detector"] == TorchServeConfig.load(SHIPPED).models["ai_detector"]   # the copy did not alias
    # the comments above models= stay; only load_models and the models= block changed
    assert "# Dynamic batching: up to batchSize requests" in written.text()
    assert len(written.text().splitlines()) == len(SHIPPED.read_text().splitlines())


def test_the_model_api_variant_starts_no_model(tmp_path: Path) -> None:
    config = TorchServeConfig.load(SHIPPED)
    open_model_api_without_models(config)
    written = TorchServeConfig.load(config.write(tmp_path / "c.properties"))
    assert written.get("enable_model_api") == "true" and written.loaded_models == [] and written.models == {}
    assert "models" not in written and written.get("load_models") == ""
    shipped = SHIPPED.read_text()
    removed = [line for line in shipped.splitlines() if line not in written.text().splitlines()]
    models_block = shipped[shipped.index("\nmodels={") + 1:].splitlines()
    assert removed == ["enable_model_api=false", "load_models=ai_detector.mar,ai_detector_onnx.mar,ai_detector_int8.mar",
                       *models_block]


def test_set_appends_a_new_key_and_escapes_what_java_would_unescape() -> None:
    config = TorchServeConfig.parse("a=1\n# note\nb=2")
    config.set("model_store", "C:\\store\nx")
    config.set("a", "3")
    assert config.text() == "a=3\n# note\nb=2\nmodel_store=C:\\\\store\\nx\n"
    assert TorchServeConfig.parse(config.text()).get("model_store") == "C:\\store\nx"


def test_continued_values_and_escapes_read_as_one_value() -> None:
    config = TorchServeConfig.parse("models={\\\n   \"m\": {\"1\": {\"marName\": \"m.mar\"}}\\\n}\nurl=a\\\\\nnext=1\n")
    assert config.models == {"m": {"1": {"marName": "m.mar"}}}
    assert config.get("url") == "a\\"   # an escaped backslash at the end continues nothing
    assert config.keys() == ["models", "url", "next"]


ADDRESSES = "management_address=http://127.0.0.1:2\nmetrics_address=http://127.0.0.1:3\n"


@pytest.mark.parametrize("text, read, message", [
    ("models={not json}\n", lambda config: config.models, "bad.properties: models= is not JSON"),
    ("models=[1, 2]\n", lambda config: config.models, "models= must map model -> version -> settings"),
    ("inference_address=http://127.0.0.1\n" + ADDRESSES, lambda config: config.ports, "inference_address=.* names no port"),
    ("grpc_inference_port=1\n", lambda config: config.require("grpc_management_port"), "has no grpc_management_port"),
], ids=["not-json", "not-a-mapping", "no-port", "missing-key"])
def test_malformed_values_are_refused_with_the_reason(text: str, read, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read(TorchServeConfig.parse(text, source="bad.properties"))


@pytest.mark.parametrize("text, message", [
    ("a=1\njust some words\n", "bad.properties, line 2: expected key=value, got 'just some words'"),
    ("a=1\n\na=2\n", "bad.properties, line 3: a is set twice"),
])
def test_malformed_lines_are_refused_with_where_they_are(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TorchServeConfig.parse(text, source="bad.properties")


def test_model_edits_refuse_names_they_cannot_find() -> None:
    config = TorchServeConfig.load(SHIPPED)
    with pytest.raises(ConfigError, match="no model nope to remove"):
        config.remove_model("nope")
    with pytest.raises(ConfigError, match="no model nope to copy"):
        config.add_model("x", like="nope")
    with pytest.raises(ConfigError, match="already configured"):
        config.add_model("ai_detector_onnx", like="ai_detector")
    with pytest.raises(ConfigError, match="not a property key"):
        config.set("bad key", "1")
