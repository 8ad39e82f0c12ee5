"""The robustness report end to end on CIFAKE test images."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import MODEL_DIR
from training import robustness


def test_report_runs_end_to_end(cifake_dir: Path, tmp_path: Path) -> None:
    robustness.main(["--model", str(MODEL_DIR), "--data", str(cifake_dir), "--images", "16", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "robustness.json").read_text())
    assert [r["condition"] for r in report["cifake"]] == list(robustness.CONDITIONS)
    assert all(r["images"] == 16 and r["served_accuracy"] <= r["accuracy"] for r in report["cifake"])
    assert all(r["served_accuracy"] >= r["accuracy"] - (1 - r["coverage"]) - 1e-9 for r in report["cifake"])
    photos = robustness.outside_photos(report["seed"])
    assert [(r["set"], r["images"]) for r in report["outside"]] == [(name, len(files)) for name, files in photos.items()]
    fake_answers = [r["false_positive_rate"] * r["images"] for r in report["outside"]]   # a share of whole images
    assert all(abs(n - round(n)) < 1e-9 for n in fake_answers)
    assert report["split"] == "test" and "| JPEG quality 50 |" in (tmp_path / "robustness.md").read_text()
    assert (tmp_path / "robustness.png").stat().st_size > 10_000


def test_the_validation_report_has_its_own_files_and_says_which_images(cifake_dir: Path, tmp_path: Path) -> None:
    robustness.main(["--model", str(MODEL_DIR), "--data", str(cifake_dir), "--images", "8", "--split", "validation",
                     "--out", str(tmp_path)])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"robustness_validation.{ext}" for ext in ("json", "md", "png")]
    report = json.loads((tmp_path / "robustness_validation.json").read_text())
    assert report["split"] == "validation" and all(r["images"] == 8 for r in report["cifake"])
    text = (tmp_path / "robustness_validation.md").read_text()
    assert "Fixed sample of 8 validation images (the model's own split" in text
