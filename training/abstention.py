"""Fit a trained model's UNCERTAIN threshold on its own validation split and write it into metadata.json.

    python -m training.abstention --model model --data ../shared/data/cifake [--coverage 0.975]

Training does this at its end (``abstention_coverage``); this refits a model folder without retraining
(a model trained before the threshold existed, or another coverage). The validation split is the run's own,
rebuilt from the folder's config.json (seed, val_fraction), so no test or outside image takes part.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from detector.data import CifakeSource, load_split
from detector.model import calibrated_probabilities, load_model, predict_logits
from training.config import TrainConfig, load_file, merge
from training.metrics import fit_abstention
from training.train import training_and_validation


def refit(model_dir: Path, data: Path, coverage: float | None = None, batch_size: int = 256) -> dict[str, Any]:
    """Fit, write ``min_confidence`` and ``metrics.abstention`` into ``model_dir``'s metadata; returns the fit."""
    model, metadata = load_model(model_dir)
    config = replace(merge(TrainConfig(), load_file(model_dir / "config.json")), data=str(data))
    source = CifakeSource(data, metadata.class_names)
    _, val_samples = training_and_validation(source, config)
    validation = load_split(source, val_samples, metadata.input_size, metadata.downsample_filter, "validation")
    logits = predict_logits(model, torch.from_numpy(validation.images), batch_size, "fp32")
    probabilities = calibrated_probabilities(logits, metadata.temperature).numpy()
    abstention = fit_abstention(probabilities, validation.labels,
                                config.abstention_coverage if coverage is None else coverage)
    replace(metadata, min_confidence=abstention["min_confidence"],
            metrics={**metadata.metrics, "abstention": abstention}).save(model_dir)
    return abstention


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("model"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cifake"))
    parser.add_argument("--coverage", type=float, help="share of validation answered (default: the run's config)")
    args = parser.parse_args(argv)
    fit = refit(args.model, args.data, args.coverage)
    print(f"[abstention] {args.model}: UNCERTAIN below confidence {fit['min_confidence']:.4f}; on validation "
          f"{fit['coverage']:.2%} answered, {fit['accuracy_answered']:.2%} of them right", file=sys.stderr)


if __name__ == "__main__":
    main()
