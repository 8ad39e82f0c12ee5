"""The outside-CIFAKE report end to end."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import MODEL_DIR, OUTSIDE, outside_folder
from training import outside


def test_report_runs_end_to_end(cifake_dir: Path, tmp_path: Path) -> None:
    folder = OUTSIDE if OUTSIDE.exists() else outside_folder(tmp_path / "outside")
    out = tmp_path / "reports"
    outside.main(["--model", str(MODEL_DIR), "--outside", str(folder), "--data", str(cifake_dir), "--out", str(out)])
    report = json.loads((out / "outside_report.json").read_text())
    images = outside.read_outside_folder(folder)
    counts = report["folders"][str(folder)]
    assert counts["images"] == len(images)
    assert counts["answered_real"] + counts["answered_fake"] + counts["uncertain"] == len(images)
    assert counts["real_right"] <= counts["answered_real"] and counts["fake_right"] <= counts["answered_fake"]
    assert sum(c["images"] for c in report["per_generator"].values()) == len(images)
    shipped = [p for p in report["curve"]["points"] if outside._is_shipped(p, report)]
    assert len(shipped) == 1, "the model's own point lies on the curve the fit chose it from"
    assert shipped[0]["folders"][str(folder)] == counts   # the sweep's verdict at that point is the served one
    assert report["cifake_validation"]["images"] == 5000
    assert "a REAL answer is right" in (out / "outside_report.md").read_text()
    assert (out / "outside.png").stat().st_size > 10_000
