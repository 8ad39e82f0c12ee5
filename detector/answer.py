"""The answer the service gives: REAL, FAKE, or UNCERTAIN where the calibrated confidence is below the
model's operating threshold (``ModelMetadata.min_confidence``, fitted on the validation split).

One definition for the handler, the reports and the threshold fit, so that what the reports measure is
what callers get. The decision reads only the calibrated probabilities of the aligned 32x32 input: never
the file's size, format or pixel dimensions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

UNCERTAIN = "UNCERTAIN"


def forced_label(response: dict[str, Any]) -> str:
    """The REAL/FAKE answer in a served response, for callers who want no abstention: the label, or the
    class an UNCERTAIN answer leans to."""
    return response["abstained"]["leaning"] if "abstained" in response else response["label"]


def answer(probabilities: np.ndarray, class_names: tuple[str, ...], min_confidence: float) -> dict[str, Any]:
    """``{"label": ...}`` for one image, with ``"abstained"`` (reason, confidence, threshold and the class the
    model leans to) when the confidence is below ``min_confidence``; 0 never abstains."""
    index = int(np.argmax(probabilities))
    confidence = float(probabilities[index])
    if confidence >= min_confidence:
        return {"label": class_names[index]}
    return {"label": UNCERTAIN, "abstained": {"reason": "low_confidence", "confidence": round(confidence, 6),
                                              "threshold": min_confidence, "leaning": class_names[index]}}


def answered(probabilities: np.ndarray, min_confidence: float) -> np.ndarray:
    """True for the images that get REAL or FAKE rather than UNCERTAIN (rows of ``probabilities``)."""
    return probabilities.max(axis=1) >= min_confidence


def fit_min_confidence(probabilities: np.ndarray, coverage: float) -> float:
    """The highest threshold that still answers at least ``coverage`` of these images (fit it on validation)."""
    confidences = np.sort(probabilities.max(axis=1))[::-1]
    keep = max(int(np.ceil(coverage * len(confidences))), 1)
    return float(confidences[keep - 1])


def selective_figures(probabilities: np.ndarray, labels: np.ndarray, min_confidence: float) -> dict[str, float]:
    """Coverage (share answered) and accuracy on the answered images, at ``min_confidence``."""
    kept = answered(probabilities, min_confidence)
    correct = probabilities.argmax(axis=1) == labels
    return {"min_confidence": min_confidence, "coverage": float(kept.mean()),
            "accuracy_answered": float(correct[kept].mean()) if kept.any() else 0.0}
