"""Does this artifact, on this CPU, still answer like the eager fp32 model? Checked by export and at load.

Export stores a few real test images (aligned exactly as the server aligns them) with the eager fp32
model's calibrated probabilities and the tolerance beside every artifact. Each worker replays them
through its backend before serving: an int8 artifact whose kernels behave differently on the CPU it
landed on (u8×s8 saturation on AVX2 without VNNI, a future runtime's kernels) is caught there, and the
handler serves the eager fp32 weights instead of wrong answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors.numpy
import torch

from detector.model import calibrated_probabilities

SELFCHECK_FILENAME = "selfcheck.safetensors"
# A quantised artifact may move probabilities a little (rounding) but not flip labels or drift on average:
# the int8 export of model 0.4.0 moves them by 0.001 on average; u8×s8 saturation on AVX2 moved them 0.016.
MAX_MEAN_ABS_DELTA = 0.005
MIN_LABEL_AGREEMENT = 0.99


def probability_agreement(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """How far two runs' probabilities for the same images are apart: largest and mean change, same labels."""
    delta = np.abs(reference - candidate).max(axis=1)
    return {"max_abs_delta_probability": float(delta.max()), "mean_abs_delta_probability": float(delta.mean()),
            "label_agreement": float((reference.argmax(1) == candidate.argmax(1)).mean())}


def within_quantisation_tolerance(agreement: dict[str, float], max_mean_delta: float = MAX_MEAN_ABS_DELTA,
                                  min_label_agreement: float = MIN_LABEL_AGREEMENT) -> bool:
    """The bar an approximate (int8) artifact must clear against eager fp32."""
    return (agreement["mean_abs_delta_probability"] <= max_mean_delta
            and agreement["label_agreement"] >= min_label_agreement)


@dataclass(frozen=True)
class SelfCheck:
    """Reference images (uint8, N×3×s×s), eager fp32 probabilities for them, and the tolerance."""

    images: np.ndarray
    probabilities: np.ndarray
    max_mean_delta: float = MAX_MEAN_ABS_DELTA
    min_label_agreement: float = MIN_LABEL_AGREEMENT

    def save(self, directory: Path) -> Path:
        path = Path(directory) / SELFCHECK_FILENAME
        safetensors.numpy.save_file(
            {"images": np.ascontiguousarray(self.images, dtype=np.uint8),
             "probabilities": np.ascontiguousarray(self.probabilities, dtype=np.float32)}, str(path),
            metadata={"max_mean_delta": repr(self.max_mean_delta), "min_label_agreement": repr(self.min_label_agreement)})
        return path

    @classmethod
    def load(cls, directory: Path) -> "SelfCheck":
        path = Path(directory) / SELFCHECK_FILENAME
        tensors = safetensors.numpy.load_file(str(path))
        with safetensors.safe_open(str(path), framework="numpy") as handle:
            limits = handle.metadata() or {}
        return cls(tensors["images"], tensors["probabilities"], float(limits["max_mean_delta"]),
                   float(limits["min_label_agreement"]))

    def verify(self, logits_of, temperature: float) -> tuple[bool, dict[str, float]]:
        """Run ``logits_of`` (a backend) on the reference images; (passed, agreement figures)."""
        logits = np.asarray(logits_of(self.images))
        probabilities = calibrated_probabilities(torch.from_numpy(logits), temperature).numpy()
        agreement = probability_agreement(self.probabilities, probabilities)
        return within_quantisation_tolerance(agreement, self.max_mean_delta, self.min_label_agreement), agreement
