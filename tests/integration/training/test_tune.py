"""The Optuna study on a tiny budget: stored, resumable, and its best config replays the best trial."""

from __future__ import annotations

import csv
from pathlib import Path

from training.config import TrainConfig, merge, resolve
from training.tune import augmentation, run_study


def test_study_is_saved_resumable_and_its_best_config_reproducible(cifake_dir: Path, tmp_path: Path) -> None:
    base = merge(TrainConfig(), {"data": str(cifake_dir), "architecture": "small_cnn", "final_align_size": 32,
                                 "max_train_images": 128, "max_val_images": 64, "eval_batch_size": 64,
                                 "phases": [{"align_size": 32, "epochs": 1}], "log_every": 100, "num_threads": 2})
    study = run_study(base, tmp_path / "study", trials=2)
    assert len(study.trials) == 2 and (tmp_path / "study" / "study.db").exists()
    assert len(list(csv.DictReader((tmp_path / "study" / "trials.csv").open()))) == 2
    assert (tmp_path / "study" / "history.png").read_bytes()[:4] == b"\x89PNG"

    replayed, _ = resolve(["--config", str(tmp_path / "study" / "best_config.json")])
    best = study.best_trial
    assert replayed.lr == best.params["lr"] and replayed.batch_size == best.params["batch_size"]
    assert replayed.dropout == best.params["dropout"] and replayed.max_train_images == 128
    assert replayed.jpeg_probability == augmentation(best.params["augmentation"])["jpeg_probability"]

    again = run_study(base, tmp_path / "study", trials=2)   # resumed from study.db: nothing re-run
    assert len(again.trials) == 2
