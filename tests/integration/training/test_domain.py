"""The domain-score report end to end on a small CIFAKE sample and the outside folder."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import MODEL_DIR, OUTSIDE, outside_folder
from training import domain


def test_report_runs_end_to_end(cifake_dir: Path, tmp_path: Path) -> None:
    folder = OUTSIDE if OUTSIDE.exists() else outside_folder(tmp_path / "outside")
    out = tmp_path / "reports"
    domain.main(["--model", str(MODEL_DIR), "--data", str(cifake_dir), "--outside", str(folder),
                 "--reference-images", "64", "--validation-images", "80", "--test-images", "40", "--keep", "0.9",
                 "--out", str(out)])
    report = json.loads((out / "domain_report.json").read_text())
    assert set(report["methods"]) == set(domain.METHODS)
    for method, row in report["methods"].items():
        test_share = next(iter(row["share_turned_away"].values()))   # the CIFAKE test sample comes first
        assert test_share <= 0.35, method                            # ~10 % of validation-like images turned away
        served = next(iter(row["as_served_with_both_gates"].values()))
        assert served["answered_real"] + served["answered_fake"] + served["uncertain"] == 40
    assert "| knn_imagenet |" in (out / "domain_report.md").read_text()
    assert (out / "domain.png").stat().st_size > 20_000
