"""The shipped weights must score >= 95 % on a fixed sample of 2,000 official test images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from detector.data import CifakeSource, load_split
from detector.model import load_model, predict_logits
from tests.conftest import MODEL_DIR

SAMPLE_SIZE, SEED, TARGET = 2000, 2024, 0.95


def test_shipped_model_accuracy_on_2000_official_test_images(cifake_dir: Path) -> None:
    model, metadata = load_model(MODEL_DIR)
    source = CifakeSource(cifake_dir / "test.zip", metadata.class_names)
    samples = source.split("test")
    chosen = [samples[i] for i in np.sort(np.random.default_rng(SEED).choice(len(samples), SAMPLE_SIZE, replace=False))]
    loaded = load_split(source, chosen, metadata.input_size, metadata.downsample_filter)
    predictions = predict_logits(model, torch.from_numpy(loaded.images), batch_size=100).argmax(1).numpy()
    accuracy = float((predictions == loaded.labels).mean())
    print(f"shipped model: {accuracy:.2%} on {SAMPLE_SIZE} official test images (seed {SEED})")
    assert 0.45 < loaded.labels.mean() < 0.55  # both classes well represented
    assert accuracy >= TARGET
