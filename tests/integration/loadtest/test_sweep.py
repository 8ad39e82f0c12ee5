"""The sweep command end to end on a tiny budget: one server holding this project's model and the
stock-style baseline, Locust steps for each, the bare-model ceiling, the summary and the plot."""

from __future__ import annotations

import json
from pathlib import Path


from loadtest.sweep import main
from tests.integration.conftest import free_ports


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
