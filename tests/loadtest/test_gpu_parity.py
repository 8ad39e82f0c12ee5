"""The GPU parity report's arithmetic, checked on the CPU (CI has no GPU; the GPU run is in BENCHMARKS.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from detector.metadata import ModelMetadata
from export.export import ONNX_NAME, TORCHSCRIPT_NAME, parity_images
from detector.backends import load_backend
from loadtest.gpu_parity import compare, main, probabilities


def test_compare_reports_the_largest_move_and_the_flipped_labels() -> None:
    reference = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    candidate = np.array([[0.4, 0.6], [0.25, 0.75], [0.7, 0.3]])
    report = compare(reference, candidate, labels=np.array([0, 1, 0]))
    assert report["max_abs_delta_probability"] == pytest.approx(0.5)
    assert report["label_agreement"] == pytest.approx(2 / 3)
    assert report["reference_accuracy"] == 1.0 and report["candidate_accuracy"] == pytest.approx(2 / 3)


def test_batched_probabilities_of_two_cpu_backends_agree(artifacts_dir: Path, cifake_dir: Path) -> None:
    metadata = ModelMetadata.load(artifacts_dir)
    images, labels = parity_images(cifake_dir / "test.zip", 10, metadata.input_size, metadata.downsample_filter)
    cpu = torch.device("cpu")
    scripted = probabilities(load_backend(artifacts_dir / TORCHSCRIPT_NAME, cpu, 2), images, metadata.temperature, 4)
    onnx = probabilities(load_backend(artifacts_dir / ONNX_NAME, cpu, 2), images, metadata.temperature, 3)
    assert scripted.shape == (10, 2) and np.allclose(scripted.sum(1), 1, atol=1e-5)
    assert compare(scripted, onnx, labels)["max_abs_delta_probability"] < 1e-3


def test_refuses_to_run_without_a_gpu(artifacts_dir: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit, match="no GPU"):
        main(["--artifacts", str(artifacts_dir)])
