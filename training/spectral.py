"""Fit the frequency second opinion (detector/spectral.py) and report its accuracy honestly.

    python -m training.spectral --model model --data ../shared/data/cifake

Fits on the training split minus the validation carve-out (the same seeded split as the CNN),
measures accuracy on validation and on the full official test split (and without its
train-duplicates), writes ``spectral.json`` beside the weights and a report with a plot of the
mean spectra (``reports/spectral.md``, ``reports/spectral.png``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from detector.data import CifakeSource, load_split, stratified_split  # noqa: E402
from detector.metadata import ModelMetadata  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from detector.spectral import RADIAL_BINS, SpectralScore, radial_spectrum  # noqa: E402
from training.evaluate import train_duplicate_mask  # noqa: E402


def fit_spectral_score(images: np.ndarray, labels: np.ndarray, l2: float = 1e-3) -> SpectralScore:
    """Logistic regression on the standardised radial spectra of (N, H, W, 3) uint8 images (labels 1 = FAKE),
    minimising the summed log loss + ``l2`` * N / 2 * |w|² (no penalty on the bias)."""
    features = radial_spectrum(images)
    mean, std = features.mean(axis=0), features.std(axis=0) + 1e-6
    fit = LogisticRegression(C=1.0 / (l2 * len(features)), solver="newton-cholesky", tol=1e-8, max_iter=100)
    fit.fit((features - mean) / std, labels)
    return SpectralScore(tuple(mean.tolist()), tuple(std.tolist()), tuple(fit.coef_[0].tolist()),
                         float(fit.intercept_[0]))


def correct(score: SpectralScore, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per image: does the score's verdict (P(FAKE) > 0.5) match the label?"""
    return (score.p_fake(images) > 0.5) == (labels == 1)


def plot_spectra(images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...], path: Path) -> None:
    features = radial_spectrum(images).reshape(len(images), 3, RADIAL_BINS)
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharex=True)
    frequency = (np.arange(RADIAL_BINS) + 0.5) / RADIAL_BINS * np.sqrt(0.5)
    for channel, (axis, name) in enumerate(zip(axes, ("luminance", "blue-yellow chroma", "red-green chroma"))):
        for label, colour in ((0, "tab:green"), (1, "tab:red")):
            axis.plot(frequency, features[labels == label, channel].mean(axis=0), color=colour, label=class_names[label])
        axis.set_title(name)
        axis.set_xlabel("spatial frequency (cycles/pixel)")
    axes[0].set_ylabel("mean log power")
    axes[0].legend()
    figure.suptitle("Radial power spectrum of the aligned 32×32 input, test split")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def refit(model: Path, data: Path, seed: int = 0, val_fraction: float = 0.05, max_train_images: int | None = None,
          out: Path | None = None) -> dict[str, Any]:
    """Fit the score for ``model``'s preprocessing, write ``spectral.json`` and the report (``out``, default
    MODEL/reports); returns the measured accuracies."""
    metadata = ModelMetadata.load(model)
    source = CifakeSource(data, metadata.class_names)
    train = source.split("train")
    train_idx, val_idx = stratified_split(np.array([s.label for s in train]), val_fraction, seed)
    if max_train_images:
        train_idx = np.random.default_rng(seed).choice(train_idx, min(max_train_images, len(train_idx)), replace=False)
    load = lambda samples, name: load_split(source, samples, metadata.input_size, metadata.downsample_filter, name)  # noqa: E731
    fitted = load([train[i] for i in train_idx], "train")
    validation = load([train[i] for i in val_idx], "validation")
    test = load(source.split("test"), "test")
    to_hwc = lambda split: split.images.transpose(0, 2, 3, 1)  # noqa: E731
    score = fit_spectral_score(to_hwc(fitted), fitted.labels)
    duplicates = train_duplicate_mask(source, test)
    test_correct = correct(score, to_hwc(test), test.labels)   # scored once, then summarised two ways
    metrics = {"train_images": int(len(fitted.labels)),
               "validation_accuracy": float(correct(score, to_hwc(validation), validation.labels).mean()),
               "test_accuracy": float(test_correct.mean()),
               "test_accuracy_without_train_duplicates": float(test_correct[~duplicates].mean()),
               "test_images": int(len(test.labels))}
    score = replace(score, metrics=metrics)
    score.save(model)
    out = out or model / "reports"
    out.mkdir(parents=True, exist_ok=True)
    plot_spectra(to_hwc(test), test.labels, metadata.class_names, out / "spectral.png")
    (out / "spectral.md").write_text(
        "# Frequency second opinion (radial power spectrum + logistic regression)\n\n"
        f"Fitted on {metrics['train_images']:,} training images; never changes the CNN's label.\n\n"
        "| split | images | accuracy |\n|---|---|---|\n"
        f"| validation | {len(validation.labels):,} | {metrics['validation_accuracy']:.2%} |\n"
        f"| full official test split | {len(test.labels):,} | {metrics['test_accuracy']:.2%} |\n"
        f"| test without the train duplicates | {int((~duplicates).sum()):,} | "
        f"{metrics['test_accuracy_without_train_duplicates']:.2%} |\n\n"
        "![mean radial spectra](spectral.png)\n")
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("model"), help="model folder: spectral.json is written here")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cifake"))
    parser.add_argument("--seed", type=int, default=0, help="validation carve-out seed (the CNN's)")
    parser.add_argument("--val-fraction", type=float, default=0.05)
    parser.add_argument("--max-train-images", type=int, default=None, help="subset (smoke tests)")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default MODEL/reports)")
    args = parser.parse_args(argv)
    metrics = refit(args.model, args.data, args.seed, args.val_fraction, args.max_train_images, args.out)
    print(json.dumps(metrics, indent=2), file=sys.stderr)


if __name__ == "__main__":
    main()
