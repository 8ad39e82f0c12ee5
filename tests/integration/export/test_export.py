"""Export proves parity on real test images, and fails loudly when an artifact disagrees."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import onnx
import pytest
import torch

from detector.domain import GATE_FILES
from detector.metadata import ModelMetadata
from export.domain_gate import copy_proven
from detector.model import AlignedClassifier
from export.archive import build_archives
from detector.selfcheck import SELFCHECK_FILENAME
from export.export import ParityError, check_parity, export_all, export_torchscript, parity_images
from tests.conftest import MODEL_DIR


@pytest.fixture(scope="module")
def exported(cifake_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("artifacts")
    export_all(MODEL_DIR, out, cifake_dir, parity_count=64)
    return out


def test_export_writes_both_artifacts_with_metadata_and_parity_report(exported: Path) -> None:
    report = json.loads((exported / "parity.json").read_text())
    gate = report.pop("domain_gate")      # the shipped model has a domain gate: its files are proven and packed
    assert set(report) == {"torchscript", "onnx", "onnx_int8"}
    for name in ("torchscript", "onnx"):
        assert report[name]["max_abs_delta_probability"] <= 1e-3 and report[name]["images"] == 64
    assert (exported / "ai_detector_int8.onnx").exists() and ModelMetadata.load(exported) == ModelMetadata.load(MODEL_DIR)
    assert all(row["cpu"]["cores"] >= 1 for row in report.values())   # int8 figures depend on the CPU: named
    assert abs(gate["validation_kept"] - gate["fitted_keep"]) <= 0.005
    assert all((exported / name).stat().st_size > 0 for name in GATE_FILES)
    assert (exported / SELFCHECK_FILENAME).exists()


def test_int8_agrees_with_fp32_and_its_kernels_do_not_saturate_on_this_cpu(exported: Path) -> None:
    """Whatever the CPU family (AVX2 without VNNI included), the fused int8 kernels compute what the
    unfused quantised graph computes: a u8×s8 kernel that saturates moves probabilities by up to 0.95."""
    int8 = json.loads((exported / "parity.json").read_text())["onnx_int8"]
    assert int8["label_agreement"] >= 0.99 and int8["mean_abs_delta_probability"] <= 0.005
    assert int8["kernels_vs_unfused_max_abs_delta"] <= 0.05


def test_onnx_has_a_dynamic_batch_axis(exported: Path) -> None:
    graph_input = onnx.load(str(exported / "ai_detector.onnx")).graph.input[0]
    dims = graph_input.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 32, 32]


def test_export_refuses_a_domain_threshold_fitted_on_other_files(cifake_dir: Path, tmp_path: Path) -> None:
    metadata = ModelMetadata.load(MODEL_DIR)
    shifted = dataclasses.replace(metadata, domain_gate=dataclasses.replace(
        metadata.domain_gate, threshold=metadata.domain_gate.threshold + 0.05))
    with pytest.raises(ParityError, match="refit it"):
        copy_proven(shifted, cifake_dir, tmp_path)
    assert not list(tmp_path.iterdir())   # nothing copied


def test_parity_check_fails_loudly_on_a_different_model(cifake_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(1)
    impostor = AlignedClassifier(ModelMetadata.load(MODEL_DIR))  # same architecture, untrained weights
    artifact = export_torchscript(impostor, tmp_path / "impostor.pt")
    images, _ = parity_images(cifake_dir, 16, 32, "bicubic")
    with pytest.raises(ParityError, match="disagree"):
        check_parity(MODEL_DIR, {"torchscript": artifact}, images, tolerance=1e-3)
    with pytest.raises(ParityError, match="max_mean_abs_delta"):  # an untrained model's answers are not int8 noise
        check_parity(MODEL_DIR, {"onnx_int8": artifact}, images, tolerance=1e-3, quantised=frozenset({"onnx_int8"}))


def test_archives_hold_handler_packages_and_metadata(exported: Path, tmp_path: Path) -> None:
    import zipfile

    archives = build_archives(exported, tmp_path / "store", stage_root=tmp_path / "stage")
    assert [a.name for a in archives] == ["ai_detector.mar", "ai_detector_onnx.mar", "ai_detector_int8.mar"]
    for archive, artifact in zip(archives, ("ai_detector.pt", "ai_detector.onnx", "ai_detector_int8.onnx")):
        names = set(zipfile.ZipFile(archive).namelist())
        assert {artifact, "ai_detector_handler.py", "metadata.json", "model-config.yaml", SELFCHECK_FILENAME,
                "detector/pipeline.py", "detector/backends.py", "detector/preprocessing.py", "MAR-INF/MANIFEST.json"} <= names
        manifest = json.loads(zipfile.ZipFile(archive).read("MAR-INF/MANIFEST.json"))
        assert manifest["model"]["serializedFile"] == artifact
    assert len((tmp_path / "store" / "SHA256SUMS").read_text().splitlines()) == len(archives)
