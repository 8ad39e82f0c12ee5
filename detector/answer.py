"""The answer the service gives: REAL, FAKE, or UNCERTAIN where the picture is unlike the training data
(its domain score is below the gate's threshold, ``detector.domain``), the calibrated confidence is below
the model's operating threshold (``ModelMetadata.min_confidence``), or a FAKE answer does not survive
re-encoding the picture the way CIFAKE was encoded (``detector.recheck``); the thresholds are fitted together
on the validation split.

One definition for the handler, the reports and the threshold fit, so that what the reports measure is
what callers get. The decision reads only the aligned 32x32 input (its calibrated probabilities and its
domain score): never the file's size, format or pixel dimensions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

UNCERTAIN = "UNCERTAIN"
OUT_OF_DOMAIN = "out_of_domain"
LOW_CONFIDENCE = "low_confidence"
COMPRESSION_SENSITIVE = "compression_sensitive"   # the JPEG recheck (detector.recheck)
RECHECK_CUTOFF = 0.5   # a rechecked FAKE answer stands while P(FAKE) of the re-encoded picture is at least this


def forced_label(response: dict[str, Any]) -> str:
    """The REAL/FAKE answer in a served response, for callers who want no abstention: the label, or the
    class an UNCERTAIN answer leans to."""
    return response["abstained"]["leaning"] if "abstained" in response else response["label"]


def answer(probabilities: np.ndarray, class_names: tuple[str, ...], min_confidence: float,
           domain_score: float | None = None, domain_threshold: float | None = None,
           fake_after_reencoding: float | None = None) -> dict[str, Any]:
    """``{"label": ...}`` for one image, with ``"abstained"`` (reason, confidence, the threshold that failed and
    the class the model leans to) when the domain score is below ``domain_threshold`` (reason
    ``out_of_domain``, checked first: the confidence of a picture the model does not know means nothing), the
    confidence is below ``min_confidence`` (``low_confidence``; 0 / None never abstain), or the answer is
    FAKE but the JPEG recheck's P(FAKE) (``fake_after_reencoding``; None or NaN: not rechecked) is below 0.5
    (``compression_sensitive``)."""
    index = int(np.argmax(probabilities))
    confidence = float(probabilities[index])
    leaning = {"confidence": round(confidence, 6), "leaning": class_names[index]}
    if domain_threshold is not None and domain_score is not None and domain_score < domain_threshold:
        return {"label": UNCERTAIN, "abstained": {"reason": OUT_OF_DOMAIN, "domain_score": round(domain_score, 6),
                                                  "threshold": domain_threshold, **leaning}}
    if confidence < min_confidence:
        return {"label": UNCERTAIN, "abstained": {"reason": LOW_CONFIDENCE, "threshold": min_confidence, **leaning}}
    if class_names[index] == "FAKE" and fake_after_reencoding is not None and fake_after_reencoding < RECHECK_CUTOFF:
        return {"label": UNCERTAIN, "abstained": {"reason": COMPRESSION_SENSITIVE,
                                                  "fake_after_reencoding": round(float(fake_after_reencoding), 6),
                                                  **leaning}}
    return {"label": class_names[index]}


def answered(probabilities: np.ndarray, min_confidence: float, passed: np.ndarray | None = None) -> np.ndarray:
    """True for the images that get REAL or FAKE rather than UNCERTAIN (rows of ``probabilities``);
    ``passed``: per image, False where the domain gate or the JPEG recheck abstains (None: neither runs)."""
    confident = probabilities.max(axis=1) >= min_confidence
    return confident if passed is None else confident & passed


def fit_min_confidence(probabilities: np.ndarray, coverage: float, passed: np.ndarray | None = None) -> float:
    """The highest threshold that, with the other checks' verdicts (``passed``, see ``answered``), still answers
    at least ``coverage`` of these images (fit it on validation); 0 when those checks alone already turn away
    more than ``1 - coverage``."""
    confidences = probabilities.max(axis=1)
    needed = max(int(np.ceil(coverage * len(confidences))), 1)
    candidates = np.sort(confidences if passed is None else confidences[passed])[::-1]
    return float(candidates[needed - 1]) if needed <= len(candidates) else 0.0


def selective_figures(probabilities: np.ndarray, labels: np.ndarray, min_confidence: float,
                      passed: np.ndarray | None = None) -> dict[str, float]:
    """Coverage (share answered) and accuracy on the answered images, at ``min_confidence`` and the checks."""
    kept = answered(probabilities, min_confidence, passed)
    correct = probabilities.argmax(axis=1) == labels
    return {"min_confidence": min_confidence, "coverage": float(kept.mean()),
            "accuracy_answered": float(correct[kept].mean()) if kept.any() else 0.0}
