"""The answer the service gives: REAL, FAKE, or UNCERTAIN where the picture is unlike the training data
(its domain score is below the gate's threshold, ``detector.domain``) or the calibrated confidence is below
the model's operating threshold (``ModelMetadata.min_confidence``); both thresholds are fitted together on the
validation split.

One definition for the handler, the reports and the threshold fit, so that what the reports measure is
what callers get. The decision reads only the aligned 32x32 input (its calibrated probabilities and its
domain score): never the file's size, format or pixel dimensions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

UNCERTAIN = "UNCERTAIN"
OUT_OF_DOMAIN = "out_of_domain"


def forced_label(response: dict[str, Any]) -> str:
    """The REAL/FAKE answer in a served response, for callers who want no abstention: the label, or the
    class an UNCERTAIN answer leans to."""
    return response["abstained"]["leaning"] if "abstained" in response else response["label"]


def answer(probabilities: np.ndarray, class_names: tuple[str, ...], min_confidence: float,
           domain_score: float | None = None, domain_threshold: float | None = None) -> dict[str, Any]:
    """``{"label": ...}`` for one image, with ``"abstained"`` (reason, confidence, the threshold that failed and
    the class the model leans to) when the domain score is below ``domain_threshold`` (reason
    ``out_of_domain``, checked first: the confidence of a picture the model does not know means nothing) or
    the confidence is below ``min_confidence`` (``low_confidence``); 0 / None never abstain."""
    index = int(np.argmax(probabilities))
    confidence = float(probabilities[index])
    leaning = {"confidence": round(confidence, 6), "leaning": class_names[index]}
    if domain_threshold is not None and domain_score is not None and domain_score < domain_threshold:
        return {"label": UNCERTAIN, "abstained": {"reason": OUT_OF_DOMAIN, "domain_score": round(domain_score, 6),
                                                  "threshold": domain_threshold, **leaning}}
    if confidence >= min_confidence:
        return {"label": class_names[index]}
    return {"label": UNCERTAIN, "abstained": {"reason": "low_confidence", "threshold": min_confidence, **leaning}}


def answered(probabilities: np.ndarray, min_confidence: float, in_domain: np.ndarray | None = None) -> np.ndarray:
    """True for the images that get REAL or FAKE rather than UNCERTAIN (rows of ``probabilities``);
    ``in_domain``: the domain gate's verdict per image (None: no gate)."""
    confident = probabilities.max(axis=1) >= min_confidence
    return confident if in_domain is None else confident & in_domain


def fit_min_confidence(probabilities: np.ndarray, coverage: float, in_domain: np.ndarray | None = None) -> float:
    """The highest threshold that, with the domain gate's verdicts, still answers at least ``coverage`` of these
    images (fit it on validation); 0 when the gate alone already turns away more than ``1 - coverage``."""
    confidences = probabilities.max(axis=1)
    needed = max(int(np.ceil(coverage * len(confidences))), 1)
    candidates = np.sort(confidences if in_domain is None else confidences[in_domain])[::-1]
    return float(candidates[needed - 1]) if needed <= len(candidates) else 0.0


def selective_figures(probabilities: np.ndarray, labels: np.ndarray, min_confidence: float,
                      in_domain: np.ndarray | None = None) -> dict[str, float]:
    """Coverage (share answered) and accuracy on the answered images, at ``min_confidence`` and the gate."""
    kept = answered(probabilities, min_confidence, in_domain)
    correct = probabilities.argmax(axis=1) == labels
    return {"min_confidence": min_confidence, "coverage": float(kept.mean()),
            "accuracy_answered": float(correct[kept].mean()) if kept.any() else 0.0}
