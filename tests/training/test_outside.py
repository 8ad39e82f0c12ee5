"""The outside-CIFAKE report: folder reading, the risk-coverage arithmetic, and the report end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import MODEL_DIR, REPO, encode, photo
from training import outside

OUTSIDE = REPO.parent / "shared" / "data" / "outside"


def make_folder(root: Path) -> Path:
    for name, count in (("real", 3), ("generated", 2)):
        (root / name).mkdir(parents=True)
        for index in range(count):
            (root / name / f"{index}.jpg").write_bytes(encode(photo(48, 40, seed=index), "JPEG", quality=90))
    (root / "generated" / "notes.txt").write_text("not an image")
    (root / "MANIFEST.tsv").write_text("file\tclass\tgenerator\ngenerated/0.jpg\tgenerated\tSDXL\n")
    return root


def test_folder_gives_each_image_its_truth_and_generator(tmp_path: Path) -> None:
    images = outside.read_outside_folder(make_folder(tmp_path))
    assert [(image.path.name, image.truth, image.generator) for image in images] == [
        ("0.jpg", "REAL", "camera"), ("1.jpg", "REAL", "camera"), ("2.jpg", "REAL", "camera"),
        ("0.jpg", "FAKE", "SDXL"), ("1.jpg", "FAKE", "unknown generator")]
    with pytest.raises(FileNotFoundError, match="real"):
        outside.read_outside_folder(tmp_path / "real")


def test_risk_coverage_answers_the_most_confident_first() -> None:
    truth = np.array([1, 0, 1, 0], dtype=bool)
    p_fake = np.array([0.99, 0.95, 0.40, 0.20])   # confidences 0.99, 0.95, 0.60, 0.80: the 2nd and 3rd are wrong
    probabilities = np.stack([1 - p_fake, p_fake], axis=1)
    coverage, risk = outside.risk_coverage(truth, probabilities)
    assert coverage.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert risk.tolist() == [0.0, 0.5, 1 / 3, 0.5]
    assert outside.risk_at(coverage, risk, 0.5) == 0.5 and outside.risk_at(coverage, risk, 1.0) == 0.5
    counts = outside.answer_counts(truth, probabilities, min_confidence=0.0)
    assert counts == {"images": 4, "answered_real": 2, "answered_fake": 2, "uncertain": 0, "wrong": 0.5}
    cautious = outside.answer_counts(truth, probabilities, min_confidence=0.9)   # the 0.60 and 0.80 answers abstain
    assert cautious == {"images": 4, "answered_real": 0, "answered_fake": 2, "uncertain": 2, "wrong": 0.25}


def test_report_runs_end_to_end(cifake_dir: Path, tmp_path: Path) -> None:
    folder = OUTSIDE if OUTSIDE.exists() else make_folder(tmp_path / "outside")
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
