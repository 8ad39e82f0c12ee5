"""bf16 and int8 variants: exported, runnable by the handler's backends, measured against fp32."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from export.variants import BF16_NAME, INT8_NAME, VARIANTS_NAME, build_variants
from detector.backends import load_backend
from tests.conftest import MODEL_DIR


def test_variants_are_measured_against_fp32_with_a_ship_verdict(artifacts_dir: Path, cifake_dir: Path,
                                                                 tmp_path: Path, cifake_images) -> None:
    for name in ("ai_detector.pt", "ai_detector.onnx", "metadata.json"):
        shutil.copy2(artifacts_dir / name, tmp_path / name)
    report = build_variants(MODEL_DIR, tmp_path, cifake_dir, images=200, calibration_count=64)
    assert json.loads((tmp_path / VARIANTS_NAME).read_text()) == report
    for name in (BF16_NAME, INT8_NAME):
        row = report[name]
        assert row["images"] == 200 and row["accuracy"] > 0.85
        assert row["fit_to_ship"] == (row["drop_vs_fp32"] <= 0.002)
    assert report[INT8_NAME]["megabytes"] < report["ai_detector.onnx"]["megabytes"] / 3   # int8 weights

    from detector.preprocessing import load_aligned
    batch = np.stack([load_aligned(d, 32, "bicubic").transpose(2, 0, 1) for _, d in cifake_images[:16]])
    reference = torch.softmax(torch.from_numpy(load_backend(tmp_path / "ai_detector.pt", torch.device("cpu"), 2)(batch)), 1)
    for name in (BF16_NAME, INT8_NAME):
        probabilities = torch.softmax(torch.from_numpy(load_backend(tmp_path / name, torch.device("cpu"), 2)(batch)), 1)
        assert (probabilities - reference).abs().max() < 0.1 and (probabilities.argmax(1) == reference.argmax(1)).float().mean() >= 0.9
