"""The outside-CIFAKE report end to end."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import MODEL_DIR, OUTSIDE, outside_folder
from training import outside


def test_report_runs_end_to_end(cifake_dir: Path, tmp_path: Path) -> None:
    folder = OUTSIDE if OUTSIDE.exists() else outside_folder(tmp_path / "outside")
    out = tmp_path / "reports"
    outside.main(["--model", str(MODEL_DIR), "--outside", str(folder), "--data", str(cifake_dir),
                  "--cifake-images", "16", "--out", str(out)])
    report = json.loads((out / "outside_report.json").read_text())
    images = outside.read_outside_folder(folder)
    real = report["classes"]["real photos"]
    assert real["images"] == sum(image.truth == "REAL" for image in images)
    assert real["answered_real"] + real["answered_fake"] + real["uncertain"] == real["images"]
    assert sum(counts["images"] for counts in report["per_generator"].values()) == len(images)
    assert report["cifake_test_sample"]["images"] == 16
    assert set(report["risk_coverage"]) == {f"outside folder ({len(images)})", "CIFAKE test sample (16)"}
    assert "Real photos answered FAKE" in (out / "outside_report.md").read_text()
    assert (out / "outside.png").stat().st_size > 10_000
