"""A real (tiny) training run on CIFAKE images: outputs, lineage, pickle-free loading, resume, evaluation CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import training.train
from detector.data import CifakeSource, content_sha256, stratified_split
from detector.metadata import ModelMetadata
from detector.model import load_model
from training import evaluate as evaluate_cli
from training import reupload
from training.config import resolve
from training.train import CHECKPOINT_NAME, Progress, epoch_order, read_progress, train, training_and_validation

TINY = ["--max-train-images", "192", "--max-val-images", "64", "--phases", "32:1,48:1", "--final-align-size", "48",
        "--batch-size", "32", "--eval-batch-size", "64", "--log-every", "2", "--num-threads", "2"]


def test_stratified_split_is_seeded_disjoint_and_balanced() -> None:
    labels = np.array([0] * 600 + [1] * 400)
    train_a, val_a = stratified_split(labels, 0.1, seed=3)
    train_b, val_b = stratified_split(labels, 0.1, seed=3)
    assert np.array_equal(val_a, val_b) and not np.array_equal(val_a, stratified_split(labels, 0.1, seed=4)[1])
    assert set(train_a).isdisjoint(val_a) and len(train_a) + len(val_a) == len(labels)
    assert (labels[val_a] == 0).sum() == 60 and (labels[val_a] == 1).sum() == 40


def test_epoch_order_repeats_for_a_resume_and_moves_with_order_seed() -> None:
    def first_40k(order_seed: int) -> set[int]:
        return set(epoch_order(torch.Generator(), 95_000, 40_000, order_seed, epoch=0).tolist())

    generator = torch.Generator()
    first = epoch_order(generator, 95_000, 40_000, order_seed=0, epoch=0)
    augmentation_draw = torch.rand(3, generator=generator)
    again = epoch_order(generator, 95_000, 40_000, order_seed=0, epoch=0)  # what a resumed run draws
    assert torch.equal(first, again) and torch.equal(torch.rand(3, generator=generator), augmentation_draw)
    assert len(set(first.tolist())) == 40_000 and not torch.equal(first, epoch_order(generator, 95_000, 40_000, 0, epoch=1))
    # a capped stage with seed 0 leaves 55k images out; another order_seed reaches most of what it left out
    assert len(first_40k(1) - first_40k(0)) > 20_000


def test_a_run_has_finished_when_every_epoch_left_belongs_to_a_phase_ended_early() -> None:
    config, _ = resolve(["--phases", "32:3,48:2", "--final-align-size", "48"])
    assert Progress(epoch=2).epochs_left(config) == 3
    assert Progress(epoch=2, skip_phases_before=1).epochs_left(config) == 2      # epoch 3 is skipped
    # patience ended the last phase after epoch 4: its checkpoint says 4 of 5 epochs, and the run has finished
    assert Progress(epoch=4, phase=1, skip_phases_before=2).epochs_left(config) == 0
    assert Progress(epoch=5).epochs_left(config) == 0


def test_cifake_source_reads_zips_in_the_kaggle_layout(cifake_dir: Path) -> None:
    source = CifakeSource(cifake_dir)
    assert len(source.split("test")) == 20000 and len(source.split("train")) == 100000
    sample = source.split("test")[0]
    assert sample.key.startswith("test/") and source.read_bytes(sample)[:2] == b"\xff\xd8"


def test_tiny_training_run_writes_a_servable_checkpoint_and_resumes(cifake_dir: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "run"
    config, _ = resolve(["--data", str(cifake_dir), "--output", str(output), *TINY])
    train(config)
    stderr = capsys.readouterr().err
    assert "img/s" in stderr and "ETA" in stderr and "[val] epoch 2" in stderr

    saved = json.loads((output / "config.json").read_text())
    assert saved["max_train_images"] == 192 and saved["phases"][1] == {"align_size": 48, "epochs": 1, "max_images_per_epoch": None}
    metadata = ModelMetadata.load(output)
    assert metadata.align_size == 48 and len(metadata.training_data_sha256) == 64
    assert metadata.temperature != 1.0   # fitted on validation, not left at its default
    assert metadata.parent_sha256 is None and metadata.recipe_step is None   # from scratch, no config file
    assert metadata.metrics["validation"]["count"] == 64
    fit = metadata.metrics["abstention"]   # the UNCERTAIN threshold travels with the weights, fitted on validation
    assert metadata.min_confidence == fit["min_confidence"] and fit["target_coverage"] == config.abstention_coverage
    assert fit["coverage"] >= config.abstention_coverage and "UNCERTAIN below confidence" in stderr
    model, _ = load_model(output)  # safetensors: no pickle involved
    assert model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8)).shape == (1, 2)
    checkpoint = torch.load(output / CHECKPOINT_NAME, weights_only=True)  # resumable state, pickle-free too
    assert json.loads(checkpoint["state"])["epoch"] == 2

    weights_before = (output / "model.safetensors").read_bytes()
    train(config, resume=True)  # every epoch done: nothing retrains
    assert "[resume]" in capsys.readouterr().err
    assert len((output / "train_log.jsonl").read_text().splitlines()) == 2
    assert (output / "model.safetensors").read_bytes() == weights_before

    step = tmp_path / "02_tuned.toml"   # a fine-tune through the CLI, from a config file: lineage in its metadata
    step.write_text(f'init_from = "{output}"\noutput = "{tmp_path / "tuned"}"\n')
    training.train.main(["--config", str(step), "--data", str(cifake_dir), *TINY])
    assert "[init] weights from" in capsys.readouterr().err
    tuned = ModelMetadata.load(tmp_path / "tuned")
    assert tuned.recipe_step == "02_tuned.toml" and tuned.parent_sha256 == content_sha256(weights_before)

    evaluate_cli.main(["--model", str(output), "--data", str(cifake_dir), "--split", "test", "--limit", "64",
                       "--out", str(tmp_path / "reports")])
    report = json.loads((tmp_path / "reports" / "test_report.json").read_text())
    matrix = np.array(report["full"]["confusion_matrix"]["matrix"])
    assert report["full"]["count"] == 64 == matrix.sum()
    assert report["full"]["accuracy"] == pytest.approx(np.trace(matrix) / 64)   # the table and the figure agree
    assert report["abstention"]["min_confidence"] == ModelMetadata.load(output).min_confidence
    for plot in ("confusion_matrix.png", "roc.png", "reliability.png"):
        assert (tmp_path / "reports" / plot).read_bytes()[:4] == b"\x89PNG"


def test_a_distilling_fine_tune_learns_from_its_parents_answers(cifake_dir: Path, tmp_path: Path, capsys) -> None:
    cpu = ["--data", str(cifake_dir), *TINY, "--device", "cpu"]
    parent = tmp_path / "parent"
    train(resolve([*cpu, "--output", str(parent)])[0])

    def fine_tune(name: str, *flags: str) -> dict[str, torch.Tensor]:
        train(resolve([*cpu, "--output", str(tmp_path / name), "--init-from", str(parent), *flags])[0])
        return torch.load(tmp_path / name / CHECKPOINT_NAME, weights_only=True)["model"]

    plain, distilled = fine_tune("plain"), fine_tune("distilled", "--distill-weight", "0.5")
    assert "[init] distilling" in capsys.readouterr().err
    assert not torch.equal(plain["backbone.fc.weight"], distilled["backbone.fc.weight"])   # same draws, other loss
    assert ModelMetadata.load(tmp_path / "distilled").metrics["validation"]["count"] == 64


def test_training_swaps_in_re_uploaded_copies_from_a_bank_it_builds_on_first_use(cifake_dir: Path, tmp_path: Path,
                                                                                 capsys) -> None:
    bank = tmp_path / "bank.npz"
    config, _ = resolve(["--data", str(cifake_dir), "--output", str(tmp_path / "run"), *TINY,
                         "--reupload-probability", "0.5"])
    with pytest.raises(ValueError, match="needs reupload_bank"):
        train(config)
    config, _ = resolve(["--data", str(cifake_dir), "--output", str(tmp_path / "run"), *TINY,
                         "--reupload-probability", "0.5", "--reupload-bank", str(bank)])
    train(config)
    log = capsys.readouterr().err
    assert "no re-upload bank at" in log and "1 re-uploaded copies per training image" in log
    train_samples, _ = training_and_validation(CifakeSource(cifake_dir), config)
    assert reupload.load_bank(bank, train_samples, ModelMetadata()).shape == (len(train_samples), 1, 3, 32, 32)
    assert ModelMetadata.load(tmp_path / "run").metrics["validation"]["count"] == 64


MID_EPOCH = ["--checkpoint-minutes", "1e-9"]   # a checkpoint after every step: TINY's epochs have 6


@pytest.mark.parametrize("checkpoint_flags, saves_before_stop, position", [
    ([], 1, {"epoch": 1, "steps_done": 0}),              # after epoch 1's end (its checkpoint, its log line)
    (MID_EPOCH, 3, {"epoch": 0, "steps_done": 3}),       # inside epoch 1, after its third step
], ids=["epoch-end", "mid-epoch"])
def test_a_run_stopped_mid_way_resumes_to_bit_identical_weights_on_cpu(cifake_dir: Path, tmp_path: Path, monkeypatch,
                                                                        capsys, checkpoint_flags: list[str],
                                                                        saves_before_stop: int, position: dict) -> None:
    """Tolerance: none. On the CPU, with the same seed and thread count, a run stopped in its first phase (no
    weights exported yet), after an epoch or inside one, and resumed from that checkpoint must end bit-identical
    to a run that never stopped: torch.equal on every fp32 tensor of the final checkpoint, byte-equal
    safetensors, the same per-epoch history (training-loss means included). Model, optimiser, schedule, scaler,
    position and, inside an epoch, the augmentation generator come back from the checkpoint."""
    cpu = [*TINY, "--device", "cpu"]
    whole, _ = resolve(["--data", str(cifake_dir), "--output", str(tmp_path / "whole"), *cpu])
    train(whole)
    stopped, _ = resolve(["--data", str(cifake_dir), "--output", str(tmp_path / "stopped"), *cpu, *checkpoint_flags])
    save_checkpoint = training.train.save_checkpoint
    saves = []

    def save_then_stop(*args) -> None:
        save_checkpoint(*args)
        saves.append(args)
        if len(saves) == saves_before_stop:
            raise KeyboardInterrupt("stopped after a checkpoint")

    monkeypatch.setattr(training.train, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train(stopped)
    monkeypatch.setattr(training.train, "save_checkpoint", save_checkpoint)
    middle = read_progress(tmp_path / "stopped" / CHECKPOINT_NAME)
    assert {"epoch": middle.epoch, "steps_done": middle.steps_done} == position
    assert middle.epochs_left(stopped) == 2 - position["epoch"]   # really mid-run: nothing exported yet
    assert not list((tmp_path / "stopped").glob("*.partial"))
    assert not (tmp_path / "stopped" / "model.safetensors").exists()
    assert not (tmp_path / "stopped" / "metadata.json").exists()
    weights_in_the_middle = torch.load(tmp_path / "stopped" / CHECKPOINT_NAME, weights_only=True)["model"]
    capsys.readouterr()

    train(stopped, resume=True)
    log = capsys.readouterr().err
    assert "[resume] from" in log and read_progress(tmp_path / "stopped" / CHECKPOINT_NAME).epoch == 2
    assert (f"epoch 1 at step {position['steps_done']}" in log) == bool(position["steps_done"])
    resumed, uninterrupted = (torch.load(tmp_path / run / CHECKPOINT_NAME, weights_only=True)["model"]
                              for run in ("stopped", "whole"))   # fp32, before the fp16 safetensors export
    assert resumed.keys() == uninterrupted.keys()
    assert not all(torch.equal(resumed[name], weights_in_the_middle[name]) for name in resumed)   # trained on
    for name, tensor in resumed.items():
        assert torch.equal(tensor, uninterrupted[name]), name
    assert (tmp_path / "stopped" / "model.safetensors").read_bytes() == (tmp_path / "whole" / "model.safetensors").read_bytes()
    history = [[{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (tmp_path / run / "train_log.jsonl").read_text().splitlines()] for run in ("stopped", "whole")]
    assert history[0] == history[1] and len(history[0]) == 2   # each epoch logged once, before or after the stop
