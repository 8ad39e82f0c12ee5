"""Hyper-parameter search with Optuna on a budget that fits a 2-core CPU.

    python -m training.tune --config training/experiments/tune_small_cnn.toml --trials 16 --study-dir runs/tune

Each trial is a real (short) training run of ``training.train`` on a training subset, scored by its
validation accuracy: learning rate, weight decay, batch size, classifier dropout and one
augmentation-strength knob (JPEG re-encoding, blur and crop padding scale together). The study is
stored in ``STUDY_DIR/study.db`` (SQLite: resumable, inspectable with optuna-dashboard), the
trials in ``trials.csv``, the search history in ``history.png``, and the best trial's complete
config in ``best_config.json``, which ``python -m training.train --config`` replays exactly.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402

from detector.metadata import ModelMetadata  # noqa: E402
from training.config import TrainConfig, load_file, merge, to_json  # noqa: E402
from training.train import train  # noqa: E402


def augmentation(strength: float) -> dict[str, Any]:
    """One knob for all augmentations: 0 = none, 1 = the strongest this project uses."""
    return {"jpeg_probability": round(0.4 * strength, 3), "blur_probability": round(0.2 * strength, 3),
            "crop_padding": round(4 * strength)}


def suggest(trial: optuna.Trial) -> dict[str, Any]:
    """The search space: the values a trial overrides in the base config."""
    values = {
        "lr": trial.suggest_float("lr", 3e-3, 0.3, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-5, 1e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
    }
    values.update(augmentation(trial.suggest_float("augmentation", 0.0, 1.0)))
    return values


def run_study(base: TrainConfig, study_dir: Path, trials: int, seed: int = 0) -> optuna.Study:
    study_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name="ai_detector", direction="maximize", load_if_exists=True,
                                storage=f"sqlite:///{study_dir / 'study.db'}", sampler=optuna.samplers.TPESampler(seed=seed))

    def objective(trial: optuna.Trial) -> float:
        config = merge(base, {**suggest(trial), "output": str(study_dir / f"trial_{trial.number:03d}")})
        trial.set_user_attr("config", json.loads(to_json(config)))
        accuracy = ModelMetadata.load(train(config)).metrics["validation"]["accuracy"]
        print(f"[tune] trial {trial.number}: validation accuracy {accuracy:.4f} with {trial.params}", file=sys.stderr)
        return accuracy

    remaining = trials - len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE])
    if remaining > 0:
        study.optimize(objective, n_trials=remaining)
    write_outputs(study, study_dir)
    return study


def write_outputs(study: optuna.Study, study_dir: Path) -> None:
    best = study.best_trial
    best_config = merge(TrainConfig(), {**best.user_attrs["config"], "output": str(study_dir / "best")})
    (study_dir / "best_config.json").write_text(to_json(best_config))
    names = sorted({name for t in study.trials for name in t.params})
    with open(study_dir / "trials.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["number", "state", "validation_accuracy", *names])
        writer.writerows([t.number, t.state.name, t.value, *(t.params.get(n) for n in names)] for t in study.trials)
    values = [t.value for t in study.trials if t.value is not None]
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(range(len(values)), values, "o", label="trial")
    axis.plot(range(len(values)), [max(values[:i + 1]) for i in range(len(values))], "-", label="best so far")
    axis.set_xlabel("trial")
    axis.set_ylabel("validation accuracy")
    axis.set_title("Optuna TPE search")
    axis.legend()
    figure.tight_layout()
    figure.savefig(study_dir / "history.png", dpi=110)
    plt.close(figure)
    print(f"[tune] best: trial {best.number} of {len(study.trials)}, validation accuracy {best.value:.4f}, {best.params}\n"
          f"[tune] wrote {study_dir / 'best_config.json'} (replay: python -m training.train --config "
          f"{study_dir / 'best_config.json'}), trials.csv, history.png, study.db", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="base TrainConfig (subset sizes, phases, backbone)")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--study-dir", type=Path, default=Path("runs/tune"))
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run_study(merge(TrainConfig(), load_file(args.config)), args.study_dir, args.trials, args.seed)


if __name__ == "__main__":
    main()
