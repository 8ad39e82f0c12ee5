"""The GPU parity tool on the built artifacts: two CPU backends agree, and it refuses to run without a GPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from detector.metadata import ModelMetadata
from export.export import ONNX_NAME, TORCHSCRIPT_NAME, parity_images
from detector.backends import load_backend
from loadtest.gpu_parity import compare, main, probabilities


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
