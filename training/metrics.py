"""Classification metrics for reports: accuracy, per-class P/R/F1, confusion, ROC-AUC, ECE."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

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
