"""Model metadata: everything needed to reproduce the preprocessing travels with the weights."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METADATA_FILENAME = "metadata.json"


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
    # out-of-domain gate (detector.domain.DomainGateSpec as a dict); None: only the confidence gate
    domain_gate: dict[str, Any] | None = None
    # JPEG recheck (detector.recheck.JpegRecheck as a dict: CIFAKE's quantisation tables); None: no recheck
    jpeg_recheck: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "ModelMetadata":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown metadata keys: {sorted(unknown)}")
        values = dict(raw)
        for key in ("class_names", "mean", "std"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

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
