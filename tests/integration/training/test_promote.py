"""make promote: a finished tiny run goes into a (temporary) model folder with its UNCERTAIN threshold and
spectral score refitted there; an unfinished or incomplete run is refused and the model folder stays as it was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import training.train
from detector.metadata import ModelMetadata
from detector.spectral import SpectralScore
from tests.integration.training.test_train import TINY
from training import abstention, evaluate as evaluate_cli
from training import promote
from training.config import resolve
from training.train import train


@pytest.fixture(scope="module")
def finished_run(cifake_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run from a recipe-like config file that trained to its end, evaluated as `make evaluate MODEL=run`
    would (on 64 test images)."""
    runs = tmp_path_factory.mktemp("runs")
    (runs / "01_tiny.toml").write_text(f'output = "{runs / "tiny"}"\ndevice = "cpu"\n')
    training.train.main(["--config", str(runs / "01_tiny.toml"), "--data", str(cifake_dir), *TINY])
    run = runs / "tiny"
    evaluate_cli.main(["--model", str(run), "--data", str(cifake_dir), "--split", "test", "--limit", "64",
                       "--out", str(run / "reports")])
    return run


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    """A model folder holding a previous model's files (stand-ins), which promote must replace or keep."""
    folder = tmp_path / "model"
    (folder / "reports").mkdir(parents=True)
    for name in ("model.safetensors", "metadata.json", "config.json", "spectral.json", "reports/test_report.json",
                 "reports/robustness.md"):
        (folder / name).write_text(f"previous model's {name}")
    ModelMetadata(version="previous, without a domain gate").save(folder)
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_promote_copies_the_run_and_refits_its_threshold_and_spectral_score(finished_run: Path, model: Path,
                                                                            cifake_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    trained = ModelMetadata.load(run)
    refitted = tmp_path / "refitted"   # what training.abstention fits on the run's own validation split
    shutil.copytree(finished_run, refitted)
    fit = abstention.refit(refitted, cifake_dir)
    stale = {**json.loads(trained.to_json()), "min_confidence": 0.0, "metrics": {**trained.metrics, "abstention": {}}}
    (run / "metadata.json").write_text(json.dumps(stale))

    kept = promote.promote(run, model, cifake_dir)

    for name in ("model.safetensors", "config.json", "train_log.jsonl", "reports/test_report.json", "reports/roc.png"):
        assert (model / name).read_bytes() == (run / name).read_bytes(), name
    promoted = ModelMetadata.load(model)
    assert promoted.min_confidence == fit["min_confidence"] > 0.0   # refitted on the run's own validation split
    assert promoted.metrics["abstention"] == fit
    assert promoted.to_json() == ModelMetadata.load(refitted).to_json()   # lineage, temperature, hash travel unchanged
    assert promoted.temperature == trained.temperature and promoted.version == trained.version
    assert promoted.recipe_step == "01_tiny.toml" and promoted.parent_sha256 is None
    score = SpectralScore.load(model)
    assert score.metrics["train_images"] == 192 and score.metrics["test_images"] == 20_000   # the run's subset
    assert f"{score.metrics['test_accuracy']:.2%}" in (model / "reports" / "spectral.md").read_text()
    assert kept == ["robustness.md"] and (model / "reports" / "robustness.md").read_text().startswith("previous")
    assert not (model / "last.pt").exists() and not list(tmp_path.glob(".model-promote-*"))   # no staging left


def one_more_epoch(run: Path) -> None:
    """The run's folder reused with a longer config (what --resume with one more epoch leaves while it trains)."""
    config = json.loads((run / "config.json").read_text())
    config["phases"][-1]["epochs"] += 1
    (run / "config.json").write_text(json.dumps(config))


def never_calibrated(run: Path) -> None:
    """Stopped between the last epoch and the temperature fit: metadata.json as finalise first writes it."""
    metadata = ModelMetadata.load(run)
    (run / "metadata.json").write_text(ModelMetadata(architecture=metadata.architecture,
                                                     align_size=metadata.align_size).to_json())


@pytest.mark.parametrize("break_run, refusal", [
    (lambda run: (run / "reports" / "test_report.json").unlink(), "lacks reports/test_report.json"),
    (lambda run: (run / "model.safetensors").unlink(), "lacks model.safetensors"),
    (one_more_epoch, r"unfinished: 1 epoch\(s\)"),
    (never_calibrated, "never finalised"),
], ids=["not evaluated", "no weights", "epochs left", "not calibrated"])
def test_promote_refuses_an_incomplete_run_and_changes_nothing(finished_run: Path, model: Path, cifake_dir: Path,
                                                               tmp_path: Path, break_run, refusal: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    break_run(run)
    before = snapshot(model)
    with pytest.raises(promote.RefusedError, match=refusal):
        promote.promote(run, model, cifake_dir)
    assert snapshot(model) == before and not list(tmp_path.glob(".model-promote-*"))


def test_promote_cli_refuses_a_run_stopped_mid_way(model: Path, cifake_dir: Path, tmp_path: Path, monkeypatch) -> None:
    run = tmp_path / "stopped"
    config, _ = resolve(["--data", str(cifake_dir), "--output", str(run), *TINY])
    save_checkpoint = training.train.save_checkpoint

    def save_then_stop(*args) -> None:   # killed right after its first epoch's checkpoint
        save_checkpoint(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(training.train, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    before = snapshot(model)
    with pytest.raises(SystemExit, match=r"\[promote\] refused: .* unfinished: 1 epoch\(s\)"):
        promote.main(["--run", str(run), "--model", str(model), "--data", str(cifake_dir)])
    assert snapshot(model) == before
