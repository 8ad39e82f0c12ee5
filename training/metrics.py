"""Classification metrics for reports: accuracy, per-class P/R/F1, confusion, ROC-AUC, ECE."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from detector.answer import OperatingPoint
from detector.metadata import ModelMetadata
from detector.model import calibrated_probabilities, predict_logits


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates) sweeping the threshold over ``scores``; ties handled."""
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_labels = scores[order], labels[order]
    distinct = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(scores) - 1]
    tps = np.cumsum(sorted_labels)[distinct]
    fps = (distinct + 1) - tps
    positives, negatives = max(tps[-1], 1), max(fps[-1], 1)
    return np.r_[0.0, fps / negatives], np.r_[0.0, tps / positives]


def expected_calibration_error(confidences: np.ndarray, correct: np.ndarray, bins: int = 15) -> tuple[float, list[dict[str, float]]]:
    """ECE with equal-width confidence bins, plus the per-bin table for a reliability diagram."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece, table = 0.0, []
    for low, high in zip(edges[:-1], edges[1:]):
        in_bin = (confidences > low) & (confidences <= high)
        if not in_bin.any():
            continue
        accuracy, confidence = correct[in_bin].mean(), confidences[in_bin].mean()
        ece += in_bin.mean() * abs(accuracy - confidence)
        table.append({"low": float(low), "high": float(high), "count": int(in_bin.sum()),
                      "accuracy": float(accuracy), "confidence": float(confidence)})
    return float(ece), table


def classification_report(
    logits: torch.Tensor, labels: np.ndarray, class_names: tuple[str, ...], temperature: float
) -> dict[str, Any]:
    """Every number the evaluation report shows, from logits and true labels."""
    probabilities = calibrated_probabilities(logits, temperature).numpy()
    predictions = probabilities.argmax(axis=1)
    matrix = confusion_matrix(labels, predictions, len(class_names))
    per_class = {}
    for index, name in enumerate(class_names):
        tp = matrix[index, index]
        precision = tp / max(matrix[:, index].sum(), 1)
        recall = tp / max(matrix[index, :].sum(), 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-12)
        per_class[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
                           "support": int(matrix[index, :].sum())}
    fake_index = class_names.index("FAKE")
    confidences = probabilities.max(axis=1)
    ece, reliability = expected_calibration_error(confidences, predictions == labels)
    fpr, tpr = roc_curve((labels == fake_index).astype(np.int64), probabilities[:, fake_index])
    return {
        "count": int(len(labels)),
        "accuracy": float((predictions == labels).mean()),
        "per_class": per_class,
        "confusion_matrix": {"rows_true_cols_predicted": class_names, "matrix": matrix.tolist()},
        "roc_auc": float(np.trapezoid(tpr, fpr)),
        "ece": ece,
        "nll": float(torch.nn.functional.cross_entropy(logits.float() / temperature, torch.as_tensor(labels)).item()),
        "temperature": temperature,
        "reliability": reliability,
    }


def fit_temperature(logits: torch.Tensor, labels: np.ndarray) -> float:
    """Temperature minimising validation NLL (Guo et al. 2017); fitted on validation, never on test."""
    log_t = torch.zeros(1, requires_grad=True)
    targets = torch.as_tensor(labels)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits.float() / log_t.exp(), targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.exp().item())


def fit_abstention(probabilities: np.ndarray, labels: np.ndarray, coverage: float,
                   passed: np.ndarray | None = None) -> dict[str, Any]:
    """The UNCERTAIN threshold that, with the other checks' verdicts (``passed``: the domain gate and the JPEG
    recheck; None: neither), answers ``coverage`` of these (validation) images, and what it gives there;
    ``coverage`` 1.0 never abstains."""
    threshold = fit_min_confidence(probabilities, coverage, passed) if coverage < 1.0 else 0.0
    return {"fitted_on": "validation", "target_coverage": coverage,
            **selective_figures(probabilities, labels, threshold, passed)}


def answered(probabilities: np.ndarray, min_confidence: float, passed: np.ndarray | None = None) -> np.ndarray:
    """True for the images answered REAL or FAKE at ``min_confidence``; ``passed``: per image, False where the
    domain gate or the JPEG recheck abstains (``Verdicts.answered`` at a point with ``min_confidence`` 0), so
    that one set of verdicts serves a sweep over thresholds."""
    confident = probabilities.max(axis=1).astype(np.float64) >= min_confidence
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


def eager_p_fake(model: torch.nn.Module, metadata: ModelMetadata, batch_size: int = 256,
                 precision: str = "fp32") -> Callable[[np.ndarray], np.ndarray]:
    """uint8 N×3×s×s batch -> calibrated P(FAKE) per image with the eager model (the JPEG recheck's second pass
    in reports that run the eager weights)."""
    fake = metadata.class_names.index("FAKE")

    def p_fake(images: np.ndarray) -> np.ndarray:
        logits = predict_logits(model, torch.from_numpy(images), batch_size, precision)
        return calibrated_probabilities(logits, metadata.temperature)[:, fake].numpy()
    return p_fake


@dataclass(frozen=True)
class CheckScores:
    """What every check measures on a set of images, computed once, so that a sweep over thresholds re-decides
    without running a model: calibrated probabilities, domain scores (None: no gate) and P(FAKE) of each picture
    re-encoded like CIFAKE (None: no recheck)."""

    probabilities: np.ndarray
    domain_scores: np.ndarray | None
    fake_after_reencoding: np.ndarray | None

    def answered(self, min_confidence: float, domain_threshold: float | None, real_domain_threshold: float | None,
                 min_fake: float | None) -> np.ndarray:
        """True where ``detector.answer.decide`` answers REAL or FAKE at that point (REAL at index 0, FAKE at 1;
        ``min_fake`` None: no recheck)."""
        leaning = self.probabilities.argmax(axis=1)
        kept = self.probabilities.max(axis=1).astype(np.float64) >= min_confidence
        if domain_threshold is not None and self.domain_scores is not None:
            gate = OperatingPoint(min_confidence, domain_threshold, None, real_domain_threshold)
            needed = np.where(leaning == 0, gate.domain_threshold_for("REAL"), gate.domain_threshold_for("FAKE"))
            kept &= self.domain_scores.astype(np.float64) >= needed
        if min_fake is not None and self.fake_after_reencoding is not None:
            kept &= (leaning == 0) | (self.fake_after_reencoding >= min_fake)
        return kept


def operating_points(scores: CheckScores, labels: np.ndarray, domain_threshold: float | None, precision: float,
                     recheck: bool) -> Iterator[dict[str, Any]]:
    """The family of points the fit chooses from, least strict on REAL answers first: for each share of CIFAKE's
    REAL images whose domain score a REAL answer must reach (1.0, 0.995, ... 0.5), the lowest confidence threshold
    at which ``precision`` of these images' answers are right (a rechecked FAKE answer asks the re-encoded picture
    for the same confidence), with its coverage; shares where no threshold reaches ``precision`` are skipped."""
    right = scores.probabilities.argmax(axis=1) == labels
    grid = np.round(np.arange(0.5, 1.0, 0.0005), 4)
    gated = scores.domain_scores is not None and domain_threshold is not None
    real_scores = scores.domain_scores[labels == 0].astype(np.float64) if gated else None
    for keep in np.round(np.arange(1.0, 0.4999, -0.005), 3) if gated else [1.0]:
        real_threshold = None if keep == 1.0 else float(np.quantile(real_scores, 1.0 - keep))
        for threshold in grid:
            kept = scores.answered(float(threshold), domain_threshold, real_threshold, float(threshold) if recheck else None)
            if kept.any() and right[kept].mean() >= precision:
                yield {"min_confidence": float(threshold), "real_domain_threshold": real_threshold, "real_keep": float(keep),
                       "min_fake": float(threshold),
                       "coverage": float(kept.mean()), "accuracy_answered": float(right[kept].mean())}
                break


def fit_operating_point(scores: CheckScores, labels: np.ndarray, domain_threshold: float | None,
                        precision: float, coverage: float, recheck: bool) -> dict[str, Any]:
    """Thresholds that keep these (validation) images' answers right at least ``precision`` of the time while
    answering at least ``coverage`` of them, spending what coverage allows on REAL answers: outside CIFAKE only
    REAL answers fail (a picture unlike CIFAR-10 passes for a CIFAR-10 photo), so a REAL answer needs a domain
    score typical of CIFAKE's REAL images. The strictest point of ``operating_points`` that still answers
    ``coverage`` wins; where none reaches ``precision`` (a weaker model), the threshold that answers ``coverage``,
    with ``precision_met`` False."""
    chosen = None
    for point in operating_points(scores, labels, domain_threshold, precision, recheck):
        if point["coverage"] < coverage:
            break
        chosen = point
    if chosen is None:   # a weaker model: answer ``coverage`` as rightly as it can, REAL answers asked nothing more
        passed = scores.answered(0.0, domain_threshold, None, 0.5 if recheck else None)
        threshold = max(fit_min_confidence(scores.probabilities, coverage, passed), 0.5)
        kept = scores.answered(threshold, domain_threshold, None, 0.5 if recheck else None)
        right = scores.probabilities.argmax(axis=1) == labels
        chosen = {"min_confidence": threshold, "real_domain_threshold": None, "real_keep": 1.0, "min_fake": 0.5,
                  "coverage": float(kept.mean()), "accuracy_answered": float(right[kept].mean()) if kept.any() else 0.0}
    return {"fitted_on": "validation", "target_precision": precision, "target_coverage": coverage,
            "precision_met": chosen["accuracy_answered"] >= precision, **chosen}
