"""The sweep command end to end on a tiny budget: a real server, one Locust step, the summary and the plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.sweep import main
from tests.integration.conftest import free_ports

pytestmark = pytest.mark.integration


def test_sweep_writes_summary_table_and_plot(tmp_path: Path, artifacts_dir: Path, cifake_dir: Path) -> None:
    ports = ",".join(str(p) for p in free_ports(5))
    main(["--users", "1,2", "--seconds", "3", "--bare-seconds", "0.2", "--ports", ports, "--out", str(tmp_path)])
    report = json.loads((tmp_path / "sweep.json").read_text())
    assert [r["users"] for r in report["sweep"]] == [1, 2]
    assert all(r["requests"] > 0 and r["failures"] == 0 and r["p50_ms"] > 0 for r in report["sweep"])
    assert "| 2 |" in (tmp_path / "sweep.md").read_text()
    assert (tmp_path / "sweep.png").stat().st_size > 10_000
    assert (tmp_path / "locust_1u_stats.csv").exists()
