"""No Python pickle on the load path: a worker loads metadata, weights and either runtime with every
pickle entry point (and torch.load, which unpickles) made to explode."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from detector.answer import UNCERTAIN
from detector.model import load_model
from handlers.ai_detector_handler import AIDetectorHandler
from tests.conftest import MODEL_DIR
from tests.conftest import FakeContext


@pytest.fixture
def pickle_forbidden(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used on the load path")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)


@pytest.mark.parametrize("artifact", ["ai_detector.pt", "ai_detector.onnx"])
def test_handler_initialises_without_pickle(pickle_forbidden, artifacts_dir: Path, artifact: str, cifake_images) -> None:
    handler = AIDetectorHandler()
    handler.initialize(FakeContext(artifacts_dir, artifact, {"intra_op_threads": 1}))
    assert handler.handle([{"body": cifake_images[0][1]}], FakeContext(Path("."), "x"))[0]["label"] in ("REAL", "FAKE", UNCERTAIN)


def test_shipped_weights_load_without_pickle(pickle_forbidden) -> None:
    model, metadata = load_model(MODEL_DIR)
    assert metadata.class_names == ("REAL", "FAKE") and sum(p.numel() for p in model.parameters()) > 10_000_000


def test_the_guard_itself_trips(pickle_forbidden, tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="pickle used"):
        torch.load(tmp_path / "anything.pt")
