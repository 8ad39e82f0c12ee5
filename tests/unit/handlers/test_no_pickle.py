"""No Python pickle on the load path: the shipped metadata and weights load with every pickle entry point
(and torch.load, which unpickles) made to explode, and the guard itself trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detector.model import load_model
from tests.conftest import MODEL_DIR


def test_shipped_weights_load_without_pickle(pickle_forbidden) -> None:
    model, metadata = load_model(MODEL_DIR)
    assert metadata.class_names == ("REAL", "FAKE") and sum(p.numel() for p in model.parameters()) > 10_000_000


def test_the_guard_itself_trips(pickle_forbidden, tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="pickle used"):
        torch.load(tmp_path / "anything.pt")
