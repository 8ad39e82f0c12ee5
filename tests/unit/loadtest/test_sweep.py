"""The sweep's server setup, read from config.properties: each model keeps its batching, the stock
baseline gets batch one, and the bare-model ceiling covers every batch size the served models form."""

from __future__ import annotations



import pytest

from loadtest.locust_runner import LocustRow
from loadtest.sweep import answers_per_second, bare_batch_sizes, configure_models, shipped_batching
from ops.torchserve_config import TorchServeConfig
from tests.conftest import REPO


def test_configured_models_keep_their_batching_and_the_baseline_gets_batch_one() -> None:
    config = TorchServeConfig.load(REPO / "config.properties")
    configure_models(config, ["ai_detector", "ai_detector_int8", "stock_baseline"])
    models = TorchServeConfig.parse(config.text()).models
    assert list(models) == ["ai_detector", "ai_detector_int8", "stock_baseline"]
    shipped = TorchServeConfig.load(REPO / "config.properties").models
    assert models["ai_detector_int8"] == shipped["ai_detector_int8"] and models["ai_detector"] == shipped["ai_detector"]
    assert models["stock_baseline"]["1.0"]["batchSize"] == 1
    assert "load_models=ai_detector.mar,ai_detector_int8.mar,stock_baseline.mar\n" in config.text()


def test_shipped_batching_is_read_per_model_from_config_properties() -> None:
    shipped = TorchServeConfig.load(REPO / "config.properties").models
    for model in ("ai_detector", "ai_detector_int8"):
        settings = next(iter(shipped[model].values()))
        assert shipped_batching(model) == (settings["batchSize"], settings["maxBatchDelay"])
    assert shipped_batching("ai_detector") != shipped_batching("ai_detector_int8")   # not one shared setting


def test_bare_ceiling_covers_every_batch_size_the_served_models_form() -> None:
    int8_batch = shipped_batching("ai_detector_int8")[0]
    assert int8_batch in bare_batch_sizes(["ai_detector", "ai_detector_int8", "stock_baseline"])
    assert bare_batch_sizes(["stock_baseline"]) == [1, 8, 16]   # the baseline has no entry: batch 1


def test_throughput_counts_answers_not_refusals() -> None:
    """Past the job queue the server answers 503 in a few milliseconds: those must not count as throughput."""
    assert answers_per_second(LocustRow(1000, 900, 200.0, {})) == pytest.approx(20.0)
    assert answers_per_second(LocustRow(500, 0, 33.0, {})) == pytest.approx(33.0)
    assert answers_per_second(LocustRow(0, 0, 0.0, {})) == 0.0
