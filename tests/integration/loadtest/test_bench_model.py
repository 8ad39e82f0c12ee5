"""The bare-model benchmark runs the handler's stages on the built artifacts and reports sane figures."""

from __future__ import annotations

from pathlib import Path

from loadtest.bench_model import measure


def test_bare_model_benchmark_reports_each_batch_size(artifacts_dir: Path, cifake_images) -> None:
    rows = measure(artifacts_dir, "onnx", [1, 4], [data for _, data in cifake_images], seconds_per_size=0.1)
    assert [r["batch_size"] for r in rows] == [1, 4]
    for row in rows:
        assert row["images_per_second"] > 0 and 0 < row["batch_ms_p50"] <= row["batch_ms_p95"] and row["batches"] >= 5
        assert 0 < row["backend_ms_p50"] < row["batch_ms_p50"]  # the model is a part of the stages' time
