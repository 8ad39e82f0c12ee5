"""The bare-model benchmark runs the handler's stages on the built artifacts and reports sane figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.bench_model import CHECKS_OFF, check_cost, measure


def test_bare_model_benchmark_reports_each_batch_size(artifacts_dir: Path, cifake_images) -> None:
    rows = measure(artifacts_dir, "onnx", [1, 4], [data for _, data in cifake_images], seconds_per_size=0.1)
    assert [r["batch_size"] for r in rows] == [1, 4]
    for row in rows:
        assert row["images_per_second"] > 0 and 0 < row["batch_ms_p50"] <= row["batch_ms_p95"] and row["batches"] >= 5
        assert 0 < row["backend_ms_p50"] < row["batch_ms_p50"]  # the model is a part of the stages' time
        assert 0 <= row["jpeg_recheck_ms_p50"] < row["batch_ms_p50"]   # the archive's settings recheck FAKE answers


@pytest.mark.parametrize("check", list(CHECKS_OFF))
def test_check_cost_compares_the_same_pipeline_with_and_without_the_check(artifacts_dir: Path, cifake_images,
                                                                          check: str) -> None:
    row = check_cost(artifacts_dir, "onnx", 2, [data for _, data in cifake_images], rounds=1, check=check, block=1)
    assert row["images_per_second_with"] > 0 and row["images_per_second_without"] > 0
    ratio = row["images_per_second_with"] / row["images_per_second_without"]   # of rounded figures
    assert row["check"] == check and row["block"] == 1 and abs(row["cost"] - (1 - ratio)) < 0.05
