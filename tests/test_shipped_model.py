"""The shipped weights must reach the reference-model target, 98 %, on a fixed sample of 2,000 official
test images, and the int8 variant that make build ships may lose at most 0.2 pt of that and change at most
1 % of the labels, on whatever CPU runs the test (AVX2 without VNNI included)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detector.data import CifakeSource, choose_samples, load_split
from detector.hardware import cpu_line
from detector.model import load_model, predict_logits
from export.export import INT8_NAME
from handlers.stages import backend_logits, load_backend
from tests.conftest import MODEL_DIR

SAMPLE_SIZE, SEED, TARGET = 2000, 2024, 0.98


@pytest.fixture(scope="module")
def sample(cifake_dir: Path):
    model, metadata = load_model(MODEL_DIR)
    source = CifakeSource(cifake_dir / "test.zip", metadata.class_names)
    chosen = choose_samples(source.split("test"), SAMPLE_SIZE, SEED)
    loaded = load_split(source, chosen, metadata.input_size, metadata.downsample_filter)
    return loaded, predict_logits(model, torch.from_numpy(loaded.images), batch_size=100).argmax(1).numpy()


def test_shipped_model_accuracy_on_2000_official_test_images(sample) -> None:
    loaded, predictions = sample
    accuracy = float((predictions == loaded.labels).mean())
    print(f"shipped model: {accuracy:.2%} on {SAMPLE_SIZE} official test images (seed {SEED})")
    assert 0.45 < loaded.labels.mean() < 0.55  # both classes well represented
    assert accuracy >= TARGET


def test_shipped_int8_variant_loses_at_most_0_2_points(sample, artifacts_dir: Path) -> None:
    loaded, predictions = sample
    fp32 = float((predictions == loaded.labels).mean())
    backend = load_backend(artifacts_dir / INT8_NAME, torch.device("cpu"), torch.get_num_threads())
    logits = backend_logits(backend, loaded.images, 100)
    int8 = float((logits.argmax(1) == loaded.labels).mean())
    agreement = float((logits.argmax(1) == predictions).mean())
    print(f"int8: {int8:.2%}, fp32: {fp32:.2%}, label agreement {agreement:.2%} on {SAMPLE_SIZE} official test "
          f"images (seed {SEED}), {cpu_line()}")
    assert fp32 - int8 <= 0.002 and agreement >= 0.99
