"""The bare-model benchmark runs the handler's stages on the built artifacts and reports sane figures."""

from __future__ import annotations

from pathlib import Path

from loadtest.bench_model import gate_cost, measure


def test_bare_model_benchmark_reports_each_batch_size(artifacts_dir: Path, cifake_images) -> None:
    rows = measure(artifacts_dir, "onnx", [1, 4], [data for _, data in cifake_images], seconds_per_size=0.1)
    assert [r["batch_size"] for r in rows] == [1, 4]
    for row in rows:
        assert row["images_per_second"] > 0 and 0 < row["batch_ms_p50"] <= row["batch_ms_p95"] and row["batches"] >= 5
        assert 0 < row["backend_ms_p50"] < row["batch_ms_p50"]  # the model is a part of the stages' time


def test_gate_cost_compares_the_same_pipeline_with_and_without_the_gate(artifacts_dir: Path, cifake_images) -> None:
    row = gate_cost(artifacts_dir, "onnx", 2, [data for _, data in cifake_images], rounds=1, block=1)
    assert row["images_per_second_with_gate"] > 0 and row["images_per_second_without"] > 0
    ratio = row["images_per_second_with_gate"] / row["images_per_second_without"]   # of rounded figures
    assert row["block"] == 1 and abs(row["gate_cost"] - (1 - ratio)) < 0.05
