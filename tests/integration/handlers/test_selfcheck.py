"""The load-time self-check: a worker replays the export's reference answers through its backend and,
where the artifact disagrees with eager fp32 on this CPU, serves the archive's fp32 weights instead."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch

from detector.domain import GATE_FILES
from detector.metadata import METADATA_FILENAME, ModelMetadata
from detector.model import WEIGHTS_FILENAME, AlignedClassifier, load_model, predict_logits
from export.export import INT8_NAME, export_torchscript
from handlers.ai_detector_handler import AIDetectorHandler
from detector.selfcheck import SELFCHECK_FILENAME, SelfCheck
from detector.backends import FALLBACK_NAME, load_backend
from tests.conftest import MODEL_DIR
from tests.conftest import FakeContext


def test_the_shipped_int8_artifact_passes_on_this_cpu(artifacts_dir: Path) -> None:
    """7-bit weights: no int8 kernel saturates, on AVX2 as on VNNI/AMX."""
    check = SelfCheck.load(artifacts_dir)
    assert len(check.images) == 64
    passed, agreement = check.verify(load_backend(artifacts_dir / INT8_NAME, torch.device("cpu"), 2),
                                     ModelMetadata.load(artifacts_dir).temperature)
    assert passed, agreement


def test_a_disagreeing_artifact_is_replaced_by_the_eager_fp32_weights(artifacts_dir: Path, tmp_path: Path,
                                                                      cifake_images, caplog) -> None:
    for name in (METADATA_FILENAME, WEIGHTS_FILENAME, SELFCHECK_FILENAME, *GATE_FILES):
        shutil.copy2(artifacts_dir / name, tmp_path / name)
    torch.manual_seed(1)   # same architecture, untrained weights: what badly saturating kernels look like
    export_torchscript(AlignedClassifier(ModelMetadata.load(MODEL_DIR)), tmp_path / "broken.pt")
    handler = AIDetectorHandler()
    with caplog.at_level(logging.ERROR):
        handler.initialize(FakeContext(tmp_path, "broken.pt", {"intra_op_threads": 1}))
    assert handler.pipeline.backend.name == FALLBACK_NAME
    assert "self-check FAILED" in caplog.text and "eager_fp32_fallback" in caplog.text
    data = [image for _, image in cifake_images[:8]]
    answers = handler.handle([{"body": d} for d in data], FakeContext(Path("."), "x"))
    assert {a["backend"] for a in answers} == {"eager_fp32_fallback"}
    model, metadata = load_model(MODEL_DIR)
    batch = handler.pipeline.decode([{"body": d} for d in data]).images
    expected = predict_logits(model, torch.from_numpy(batch)).argmax(1).tolist()
    assert [metadata.class_names.index(a["label"]) for a in answers] == expected   # the fp32 model's answers


def test_an_agreeing_artifact_is_served_as_built(artifacts_dir: Path, caplog) -> None:
    handler = AIDetectorHandler()
    with caplog.at_level(logging.INFO):
        handler.initialize(FakeContext(artifacts_dir, INT8_NAME, {"intra_op_threads": 1}))
    assert handler.pipeline.backend.name == "onnx" and "self-check passed" in caplog.text
