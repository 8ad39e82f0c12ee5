"""Every backbone trains on CIFAKE, exports with parity and serves through the unchanged handler (one flag apart)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detector.answer import UNCERTAIN
from export.export import export_all
from handlers.ai_detector_handler import AIDetectorHandler
from tests.conftest import FakeContext
from tests.integration.training.test_train import TINY
from training.config import resolve
from training.train import train


@pytest.mark.parametrize(("architecture", "flags"), [
    ("small_cnn", ["--phases", "32:2", "--final-align-size", "32"]),
    ("efficientnet_lite0", ["--pretrained"]),
])
def test_backbone_trains_exports_and_serves_unchanged(architecture: str, flags: list[str], cifake_dir: Path,
                                                      cifake_images, tmp_path: Path) -> None:
    config, _ = resolve(["--data", str(cifake_dir), "--output", str(tmp_path / "run"), *TINY,
                         "--architecture", architecture, *flags])
    train(config)
    artifacts = tmp_path / "artifacts"
    export_all(tmp_path / "run", artifacts, cifake_dir, parity_count=16, int8=False)   # raises unless parity holds
    for artifact in ("ai_detector.pt", "ai_detector.onnx"):
        handler = AIDetectorHandler()
        handler.initialize(FakeContext(artifacts, artifact, {"intra_op_threads": 1}))
        context = FakeContext(Path("."), "unused")
        context.headers = {0: {"explain": "True"}}
        responses = handler.handle([{"body": data} for _, data in cifake_images[:2]], context)
        assert all(r["label"] in ("REAL", "FAKE", UNCERTAIN) for r in responses)
        cam = np.array(responses[0]["gradcam"]["map"])
        assert cam.ndim == 2 and cam.max() == pytest.approx(1.0, abs=1e-3)
