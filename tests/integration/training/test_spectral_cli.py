"""training.spectral end to end on real CIFAKE data (a training subset): spectral.json and the report."""

from __future__ import annotations

import shutil
from pathlib import Path

from detector.spectral import SpectralScore
from tests.conftest import MODEL_DIR
from training import spectral as spectral_cli


def test_fit_writes_the_score_with_its_measured_accuracy_and_a_report(cifake_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    shutil.copy2(MODEL_DIR / "metadata.json", model)
    spectral_cli.main(["--model", str(model), "--data", str(cifake_dir), "--max-train-images", "3000"])
    score = SpectralScore.load(model)
    assert score.metrics["train_images"] == 3000 and score.metrics["test_images"] == 20_000
    assert 0.6 <= score.metrics["test_accuracy"] <= 0.95
    report = (model / "reports" / "spectral.md").read_text()
    assert f"{score.metrics['test_accuracy']:.2%}" in report
    assert (model / "reports" / "spectral.png").read_bytes()[:4] == b"\x89PNG"
