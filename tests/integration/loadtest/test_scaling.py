"""The scaling benchmark on a tiny budget: two setups with different thread counts, each re-registered
through the management API on its own server, measured at 1 user and under load."""

from __future__ import annotations

import json
from pathlib import Path


from loadtest.scaling import main, setups
from tests.integration.conftest import free_ports


def test_setups_never_leave_cores_idle_by_accident_and_cover_batching() -> None:
    grid = setups(2, 32, 1)
    assert grid[0].workers * grid[0].threads == 2 and grid[1].workers * grid[1].threads == 2   # the two sane splits
    assert {s.batch_size for s in grid} >= {1, 8, 32} and len(grid) == len(set(grid))
    assert all((s.batch_size, s.max_batch_delay) == (32, 1) for s in grid[:5])   # workers x threads at the shipped batching


def test_scaling_measures_each_setup_with_its_own_workers(tmp_path: Path, artifacts_dir: Path, cifake_dir: Path) -> None:
    ports = ",".join(str(p) for p in free_ports(5))   # 2 cores split, whatever this machine has
    main(["--cores", "2", "--only", "2", "--seconds", "6", "--users", "4", "--ports", ports, "--out", str(tmp_path)])
    report = json.loads((tmp_path / "scaling.json").read_text())
    rows = report["rows"]
    assert report["cpu"]["model"] and report["cpu"]["cores"] >= 1
    assert [(r["workers"], r["threads"]) for r in rows] == [(1, 2), (2, 1)]
    assert all(r["rps"] > 0 and r["errors"] == 0 and r["p50_ms_1_user"] > 0 for r in rows)
    assert "2w x 1t" in (tmp_path / "scaling.md").read_text() and (tmp_path / "scaling.png").exists()
