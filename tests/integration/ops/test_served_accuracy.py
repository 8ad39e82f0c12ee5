"""The served-accuracy command refuses an offline report of the full split as the reference for a sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops.served_accuracy import main


def test_an_offline_report_of_the_full_split_is_refused_for_a_sample(cifake_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "test_report.json"
    report.write_text(json.dumps({"split": "test", "full": {"count": 20000, "accuracy": 0.9},
                                  "model": {"version": "1.0"}}))
    with pytest.raises(SystemExit):
        main(["--data", str(cifake_dir), "--images", "100", "--offline-report", str(report), "--out", str(tmp_path)])
