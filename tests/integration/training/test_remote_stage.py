"""scripts/remote_stage.sh: a stage trained from a packed archive with a time budget, then collected here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from detector.metadata import ModelMetadata
from detector.paths import REPO
from training.config import saved_config
from training.train import read_progress

SCRIPT = REPO / "scripts" / "remote_stage.sh"


@pytest.fixture(scope="module")
def stage(cifake_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A packed archive of 64 + 64 CIFAKE images as a train split, and a two-epoch config with re-uploads."""
    root = tmp_path_factory.mktemp("remote")
    with zipfile.ZipFile(cifake_dir / "test.zip") as archive:
        names = sorted(archive.namelist())
        for label in ("REAL", "FAKE"):
            for name in [n for n in names if n.startswith(f"test/{label}/")][:64]:
                target = root / "kaggle" / "train" / label / Path(name).name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(name))
    subprocess.run([sys.executable, "-m", "training.pack", "--data", str(root / "kaggle"), "--out",
                    str(root / "train.tar.xz")], cwd=REPO, check=True, capture_output=True)
    config = root / "stage.toml"
    config.write_text(f'output = "{root / "run"}"\nfinal_align_size = 48\nbatch_size = 32\neval_batch_size = 64\n'
                      f'num_threads = 2\nreupload_probability = 0.5\nreupload_bank = "{root / "bank.npz"}"\n'
                      '[[phases]]\nalign_size = 48\nepochs = 2\n')
    return root, config


def remote(*args: str | Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable, **env})


def test_a_stage_runs_the_epochs_that_fit_its_budget_and_comes_back_as_a_promotable_run(stage: tuple[Path, Path]) -> None:
    root, config = stage
    out = root / "out"
    # room for one epoch of the config's two: the script cuts the stage instead of overrunning its time
    done = remote("run", config, root / "train.tar.xz", out, BUDGET="100000", EPOCH_SECONDS="60000",
                  DATA_DIR=str(root / "data"))
    log = (out / "train.log").read_text()
    assert done.returncode == 0, log
    assert "[remote] unpacked 128 files" in log and "smoke run passed" in log and "training 1 epochs" in log
    assert "wrote" in log and (root / "bank.npz").exists()
    assert json.loads((out / "progress.json").read_text())["epoch"] == 1
    parts = sorted(out.glob("model.safetensors.part-*"))
    assert parts and all(part.stat().st_size <= 15 * 2**20 for part in parts)
    assert b"".join(part.read_bytes() for part in parts) == (root / "run" / "model.safetensors").read_bytes()

    (root / "run").rename(root / "run_there")   # here: only what came back in OUT
    collected = remote("collect", config, out)
    assert collected.returncode == 0, collected.stderr
    run = root / "run"
    assert (run / "model.safetensors").read_bytes() == (root / "run_there" / "model.safetensors").read_bytes()
    resolved = saved_config(run)
    assert read_progress(run / "last.pt").epochs_left(resolved) == 0   # what promote checks
    metadata = ModelMetadata.load(run)
    assert metadata.domain_gate is not None and metadata.jpeg_recheck is not None   # fitted here, on validation
    assert metadata.metrics["abstention"]["min_confidence"] == metadata.min_confidence


def test_a_budget_too_short_for_one_epoch_stops_before_training(stage: tuple[Path, Path]) -> None:
    root, config = stage
    failed = remote("run", config, root / "train.tar.xz", root / "short", BUDGET="100", EPOCH_SECONDS="100000",
                    DATA_DIR=str(root / "data_short"))
    assert failed.returncode == 1
    assert "no time left for an epoch" in (root / "short" / "train.log").read_text()
