"""The answer the service gives: REAL, FAKE, or UNCERTAIN where the picture is unlike the training data
(its domain score is below the gate's threshold, ``detector.domain``; a REAL answer needs the higher
``real_domain_threshold``), the calibrated confidence is below the model's operating threshold
(``ModelMetadata.min_confidence``), or a FAKE answer does not survive re-encoding the picture the way CIFAKE
was encoded (``detector.recheck``); the thresholds are fitted together on the validation split.

``decide`` is the one verdict, for the server and every report alike, so that what the reports measure is
what callers get. It reads only the aligned 32x32 input's calibrated probabilities and check results: never
the file's size, format or pixel dimensions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from detector.metadata import JpegRecheck, ModelMetadata
from detector.recheck import reencode

UNCERTAIN = "UNCERTAIN"
OUT_OF_DOMAIN = "out_of_domain"
LOW_CONFIDENCE = "low_confidence"
COMPRESSION_SENSITIVE = "compression_sensitive"   # the JPEG recheck (detector.recheck)


def forced_label(response: dict[str, Any]) -> str:
    """The REAL/FAKE answer in a served response, for callers who want no abstention: the label, or the
    class an UNCERTAIN answer leans to."""
    return response["abstained"]["leaning"] if "abstained" in response else response["label"]


@dataclass(frozen=True)
class OperatingPoint:
    """The thresholds an answer is decided with, each in its one resolved form."""

    min_confidence: float = 0.0              # below it UNCERTAIN (low_confidence); 0 never abstains
    domain_threshold: float | None = None    # below it UNCERTAIN (out_of_domain); None: no gate runs
    recheck: JpegRecheck | None = None       # None: FAKE answers are not rechecked
    real_domain_threshold: float | None = None   # a REAL answer needs at least this domain score too (None: no more)

    @classmethod
    def of(cls, metadata: ModelMetadata) -> "OperatingPoint":
        """The model's own operating point, as fitted with its weights."""
        gate = metadata.domain_gate
        return cls(metadata.min_confidence, None if gate is None else gate.threshold, metadata.jpeg_recheck,
                   None if gate is None else gate.real_threshold)

    def domain_threshold_for(self, leaning: str) -> float | None:
        """The domain score an answer leaning to ``leaning`` needs (None: no gate runs)."""
        if self.domain_threshold is None or leaning != "REAL" or self.real_domain_threshold is None:
            return self.domain_threshold
        return max(self.domain_threshold, self.real_domain_threshold)


@dataclass(frozen=True)
class Verdicts:
    """A batch's answers: per image the class it leans to, its confidence and the reason it is UNCERTAIN
    (None: answered), with what the checks measured."""

    class_names: tuple[str, ...]
    point: OperatingPoint
    leaning: np.ndarray                        # class index per image
    confidence: np.ndarray                     # calibrated probability of that class
    reasons: tuple[str | None, ...]
    domain_scores: np.ndarray | None           # None: no gate ran
    fake_after_reencoding: np.ndarray | None   # None: no recheck ran; NaN for the images not rechecked

    @classmethod
    def concatenate(cls, parts: list["Verdicts"]) -> "Verdicts":
        """The verdicts of consecutive batches decided at one point, as one."""
        first = parts[0]
        joined = {name: None if getattr(first, name) is None else np.concatenate([getattr(p, name) for p in parts])
                  for name in ("leaning", "confidence", "domain_scores", "fake_after_reencoding")}
        return cls(first.class_names, first.point, reasons=tuple(r for p in parts for r in p.reasons), **joined)

    @property
    def answered(self) -> np.ndarray:
        """True for the images that get REAL or FAKE rather than UNCERTAIN."""
        return self.abstained_for(None)

    def abstained_for(self, reason: str | None) -> np.ndarray:
        """True for the images answered UNCERTAIN for ``reason`` (None: the answered ones)."""
        return np.array([r == reason for r in self.reasons], dtype=bool)

    def share(self, reason: str) -> float:
        """The share of the batch answered UNCERTAIN for ``reason``."""
        return float(self.abstained_for(reason).mean()) if self.reasons else 0.0

    def label(self, row: int) -> str:
        return UNCERTAIN if self.reasons[row] is not None else self.class_names[self.leaning[row]]

    def answer(self, row: int) -> dict[str, Any]:
        """``{"label": ...}`` for one image, with ``"abstained"`` (reason, what failed, confidence and leaning)."""
        reason = self.reasons[row]
        if reason is None:
            return {"label": self.label(row)}
        leaning = {"confidence": round(float(self.confidence[row]), 6), "leaning": self.class_names[self.leaning[row]]}
        if reason == OUT_OF_DOMAIN:
            detail = {"domain_score": round(float(self.domain_scores[row]), 6),
                      "threshold": self.point.domain_threshold_for(self.class_names[self.leaning[row]])}
        elif reason == LOW_CONFIDENCE:
            detail = {"threshold": self.point.min_confidence}
        else:
            detail = {"fake_after_reencoding": round(float(self.fake_after_reencoding[row]), 6),
                      "threshold": self.point.recheck.min_fake}
        return {"label": UNCERTAIN, "abstained": {"reason": reason, **detail, **leaning}}


def decide(probabilities: np.ndarray, class_names: tuple[str, ...], point: OperatingPoint,
           domain_scores: np.ndarray | None = None, images: np.ndarray | None = None,
           p_fake: Callable[[np.ndarray], np.ndarray] | None = None) -> Verdicts:
    """The verdict for a batch of calibrated ``probabilities`` (N x classes), in order: out_of_domain where the
    domain score is below the threshold for the class the picture leans to (the confidence of a picture the model
    does not know means nothing), low_confidence below ``min_confidence``, then compression_sensitive where a FAKE
    answer's picture, re-encoded like CIFAKE, is no longer FAKE with P(FAKE) of at least the recheck's
    ``min_fake``: where the point has a recheck, the aligned ``images`` about to be answered FAKE are re-encoded and
    classified again by ``p_fake`` (uint8 batch -> calibrated P(FAKE), the served model)."""
    leaning = probabilities.argmax(axis=1)
    confidence = probabilities[np.arange(len(probabilities)), leaning].astype(np.float64)   # thresholds are float64
    reasons: list[str | None] = [None] * len(probabilities)
    if point.domain_threshold is not None and domain_scores is not None:
        needed = np.array([point.domain_threshold_for(name) for name in class_names], dtype=np.float64)[leaning]
        for row in np.flatnonzero(domain_scores.astype(np.float64) < needed):
            reasons[row] = OUT_OF_DOMAIN
    for row in np.flatnonzero(confidence < point.min_confidence):
        reasons[row] = reasons[row] or LOW_CONFIDENCE
    rechecked = None
    if point.recheck is not None:
        if images is None or p_fake is None:
            raise ValueError("a point with a JPEG recheck needs the aligned images and the model's p_fake")
        eligible = (leaning == class_names.index("FAKE")) & np.array([r is None for r in reasons], dtype=bool)
        rechecked = np.full(len(probabilities), np.nan)
        if eligible.any():
            rechecked[eligible] = p_fake(reencode(point.recheck, images[eligible]))
        for row in np.flatnonzero(rechecked < point.recheck.min_fake):
            reasons[row] = COMPRESSION_SENSITIVE
    return Verdicts(class_names, point, leaning, confidence, tuple(reasons), domain_scores, rechecked)
