"""Ship a finished training run: copy it into the model folder and refit what is fitted per model folder.

    make promote RUN=runs/07_model_224_gpu2     # python -m training.promote --run RUN --model model --data CIFAKE

Copies the run's weights, metadata.json (its lineage included), resolved config.json, train_log.jsonl and
reports (``make evaluate MODEL=RUN`` writes them; test_report.json must be there), then refits on the copy
the UNCERTAIN thresholds (``training.abstention``, on the run's own validation split; the model folder's
domain gate, if it has one, carries over) and the frequency second
opinion (``training.spectral``, with the run's seed, validation split and training subset) and writes their
files. It refuses, leaving the model folder untouched, when the run has not finished (its checkpoint has
epochs left, or training stopped before metadata.json was finalised) or lacks a file. Everything is prepared
in a staging folder beside the model folder and only copied in once every step has succeeded.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from detector.metadata import METADATA_FILENAME, ModelMetadata
from detector.model import WEIGHTS_FILENAME
from training import abstention, spectral
from training.config import TrainConfig, saved_config
from training.train import CHECKPOINT_NAME, read_progress

COPIED = (WEIGHTS_FILENAME, METADATA_FILENAME, "config.json", "train_log.jsonl")
REQUIRED = (*COPIED, CHECKPOINT_NAME, "reports/test_report.json")


class RefusedError(RuntimeError):
    """The run cannot be promoted as it is; nothing was changed."""


def finished_config(run: Path) -> TrainConfig:
    """The run's resolved config, once its files are all there and its training has ended; else RefusedError."""
    if not run.is_dir():
        raise RefusedError(f"no run folder {run}")
    missing = [name for name in REQUIRED if not (run / name).is_file()]
    if {"config.json", CHECKPOINT_NAME}.isdisjoint(missing):   # say "unfinished" before listing what it lacks
        config = saved_config(run)
        left = read_progress(run / CHECKPOINT_NAME).epochs_left(config)
        if left:
            raise RefusedError(f"{run} is unfinished: {left} epoch(s) of its config.json left to train "
                               "(resume it with python -m training.train --config ... --resume)")
    if missing:
        raise RefusedError(f"{run} lacks {', '.join(missing)} (reports: make evaluate MODEL={run})")
    metrics = ModelMetadata.load(run).metrics
    if "validation" not in metrics:
        raise RefusedError(f"{run}/{METADATA_FILENAME} was never finalised (training stopped before calibration)")
    return config


def carry_checks(model: Path, staging: Path) -> None:
    """The model folder's domain gate (its spec; the threshold is refitted) and JPEG recheck go to the promoted
    weights."""
    if not (model / METADATA_FILENAME).is_file():
        return
    current = ModelMetadata.load(model)
    promoted = ModelMetadata.load(staging)
    replace(promoted, domain_gate=current.domain_gate or promoted.domain_gate,
            jpeg_recheck=current.jpeg_recheck or promoted.jpeg_recheck).save(staging)


def promote(run: Path, model: Path, data: Path) -> list[str]:
    """Promote ``run`` into ``model``; returns the names in model/reports left from before (they describe the
    previous model unless the run's reports replaced them)."""
    if run.resolve() == model.resolve():
        raise RefusedError(f"{run} is the model folder itself")
    config = finished_config(run)
    model.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{model.name}-promote-", dir=model.parent) as staging_name:
        staging = Path(staging_name)
        for name in COPIED:
            shutil.copy2(run / name, staging / name)
        shutil.copytree(run / "reports", staging / "reports")
        carry_checks(model, staging)
        fit = abstention.refit(staging, data)
        print(f"[promote] UNCERTAIN below confidence {fit['min_confidence']:.4f} ({fit['coverage']:.2%} of "
              "validation answered)", file=sys.stderr, flush=True)
        spectral.refit(staging, data, config.seed, config.val_fraction, config.max_train_images)
        kept = sorted(path.name for path in (model / "reports").glob("*")
                      if not (staging / "reports" / path.name).exists())
        model.mkdir(exist_ok=True)
        for path in staging.iterdir():   # not the staging folder itself: that would give model/ its 0700 mode
            if path.is_dir():
                shutil.copytree(path, model / path.name, dirs_exist_ok=True)
            else:
                shutil.copy2(path, model / path.name)
    return kept


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a finished training run's output folder")
    parser.add_argument("--model", type=Path, default=Path("model"), help="the model folder to replace")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cifake"))
    args = parser.parse_args(argv)
    try:
        kept = promote(args.run, args.model, args.data)
    except RefusedError as error:
        sys.exit(f"[promote] refused: {error}")
    print(f"[promote] {args.run} -> {args.model}", file=sys.stderr)
    if kept:
        print(f"[promote] kept from before in {args.model}/reports (regenerate what describes the weights: "
              f"make evaluate robustness served-accuracy): {', '.join(kept)}", file=sys.stderr)


if __name__ == "__main__":
    main()
