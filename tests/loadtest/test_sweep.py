"""The sweep command end to end on a tiny budget: one server holding this project's model and the
stock-style baseline, Locust steps for each, the bare-model ceiling, the summary and the plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.sweep import bare_batch_sizes, configure_models, main, shipped_batching
from ops.torchserve_config import TorchServeConfig
from tests.conftest import REPO
from tests.integration.conftest import free_ports

pytestmark = pytest.mark.integration


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


def test_sweep_writes_summary_table_and_plot(tmp_path: Path, artifacts_dir: Path, cifake_dir: Path) -> None:
    ports = ",".join(str(p) for p in free_ports(5))
    main(["--users", "1,2", "--seconds", "3", "--bare-seconds", "0.2", "--models", "ai_detector,stock_baseline",
          "--ports", ports, "--out", str(tmp_path)])
    report = json.loads((tmp_path / "sweep.json").read_text())
    for model in ("ai_detector", "stock_baseline"):
        assert [r["users"] for r in report["sweep"][model]] == [1, 2]
        assert all(r["requests"] > 0 and r["failures"] == 0 and r["p50_ms"] > 0 for r in report["sweep"][model])
        # the served model's worker did the work; the frontend and Locust used some CPU too (how much
        # depends on the machine and what else runs on it)
        assert all(r["workers_cpu_cores"] > 0 and r["frontend_cpu_cores"] > 0 and r["locust_cpu_cores"] > 0
                   for r in report["sweep"][model])
    summary = (tmp_path / "sweep.md").read_text()
    assert "| stock_baseline | 2 |" in summary and "against the stock-style baseline: ai_detector" in summary
    assert (tmp_path / "sweep.png").stat().st_size > 10_000
    assert (tmp_path / "locust_stock_baseline_1u_stats.csv").exists()
