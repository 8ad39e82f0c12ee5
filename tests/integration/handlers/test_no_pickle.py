"""No Python pickle on the load path: a worker initialises either built runtime with every pickle entry
point (and torch.load, which unpickles) made to explode."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.answer import UNCERTAIN
from handlers.ai_detector_handler import AIDetectorHandler
from tests.conftest import FakeContext


@pytest.mark.parametrize("artifact", ["ai_detector.pt", "ai_detector.onnx"])
def test_handler_initialises_without_pickle(pickle_forbidden, artifacts_dir: Path, artifact: str, cifake_images) -> None:
    handler = AIDetectorHandler()
    handler.initialize(FakeContext(artifacts_dir, artifact, {"intra_op_threads": 1}))
    assert handler.handle([{"body": cifake_images[0][1]}], FakeContext(Path("."), "x"))[0]["label"] in ("REAL", "FAKE", UNCERTAIN)
