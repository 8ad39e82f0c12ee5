from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

import pytest

from detector.metadata import ModelMetadata
from tests.conftest import MODEL_DIR, REPO
from training.config import Phase, TrainConfig, resolve


def test_flags_override_file_which_overrides_defaults(tmp_path: Path) -> None:
    config_file = tmp_path / "c.toml"
    config_file.write_text('batch_size = 64\nlr = 0.5\n[[phases]]\nalign_size = 96\nepochs = 2\n')
    config, _ = resolve(["--config", str(config_file), "--lr", "0.01", "--no-horizontal-flip"])
    assert config.batch_size == 64                       # from the file
    assert config.lr == 0.01                             # flag beats file
    assert config.horizontal_flip is False
    assert config.weight_decay == TrainConfig().weight_decay  # default kept
    assert config.phases == [Phase(96, 2)]


def test_phases_flag(tmp_path: Path) -> None:
    config, _ = resolve(["--phases", "64:3,224:1:5000"])
    assert config.phases == [Phase(64, 3), Phase(224, 1, 5000)]


@pytest.mark.parametrize("text", ['batch_sise = 3\n', '[[phases]]\nalign_size = 9\nepochs = 1\nspeed = 2\n'])
def test_unknown_keys_are_errors(tmp_path: Path, text: str) -> None:
    config_file = tmp_path / "bad.toml"
    config_file.write_text(text)
    with pytest.raises(ValueError, match="unknown"):
        resolve(["--config", str(config_file)])


def test_json_config_files_work_too(tmp_path: Path) -> None:
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps({"seed": 7}))
    assert resolve(["--config", str(config_file)])[0].seed == 7


RECIPE = sorted((REPO / "training" / "recipe").glob("*.toml"))
EXPERIMENTS = sorted((REPO / "training" / "experiments").glob("*.toml"))


@pytest.mark.parametrize("path", RECIPE + EXPERIMENTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_training_config_resolves_without_unknown_keys(path: Path) -> None:
    config, _ = resolve(["--config", str(path)])
    assert config.phases and all(phase.epochs > 0 and phase.align_size > 0 for phase in config.phases)


def test_the_recipe_is_a_numbered_chain_that_ends_in_the_shipped_model() -> None:
    """Step N fine-tunes step N-1's output (runs/<step's file name>); the shipped model is the last step's run."""
    assert len(RECIPE) == 7 and [path.name[:3] for path in RECIPE] == [f"{n:02d}_" for n in range(1, 8)]
    configs = [resolve(["--config", str(path)])[0] for path in RECIPE]
    assert [config.output for config in configs] == [f"runs/{path.stem}" for path in RECIPE]
    assert [config.init_from for config in configs] == [None] + [config.output for config in configs[:-1]]
    shipped = json.loads((MODEL_DIR / "config.json").read_text())   # as it ran, before the files were numbered
    last = dataclasses.asdict(configs[-1])
    assert {key: value for key, value in shipped.items() if key not in ("output", "init_from")} == \
        {key: last[key] for key in shipped if key not in ("output", "init_from")}
    assert ModelMetadata.load(MODEL_DIR).recipe_step == RECIPE[-1].name


def _documented_training_commands() -> list[list[str]]:
    """The arguments of every ``python -m training.train`` command in docs/training.md's shell blocks."""
    blocks = (REPO / "docs" / "training.md").read_text().split("```bash\n")[1:]
    lines = [line for block in blocks for line in block.split("```")[0].replace("\\\n", " ").splitlines()]
    return [shlex.split(line.split("-m training.train", 1)[1].split(">")[0].split("#")[0])
            for line in lines if "-m training.train " in line]


def test_the_documented_training_commands_resolve_to_their_own_output() -> None:
    commands = _documented_training_commands()
    assert len(commands) >= 2        # the recipe's first step and the GPU stage run on CPU
    for argv in commands:
        config, args = resolve(argv)
        assert args.resume and config.output == argv[argv.index("--output") + 1]
    gpu_file = "training/experiments/reupload_blur_gpu.toml"
    on_cpu = resolve(next(argv for argv in commands if gpu_file in argv))[0]
    as_filed = resolve(["--config", gpu_file])[0]
    assert on_cpu.output != as_filed.output and on_cpu == dataclasses.replace(as_filed, output=on_cpu.output)
