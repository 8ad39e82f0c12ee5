"""Training configuration: dataclass defaults -> TOML/JSON file -> CLI flags; unknown keys are errors."""

from __future__ import annotations

import argparse
import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Phase:
    """A stretch of training at one alignment size (progressive resizing)."""

    align_size: int
    epochs: int
    max_images_per_epoch: int | None = None  # cap for a cheap partial epoch (e.g. a 224 fine-tune)


@dataclass
class TrainConfig:
    data: str = "../shared/data/cifake"   # Kaggle-layout folder, a zip, or a folder of zips
    output: str = "runs/resnet18"
    architecture: str = "resnet18"        # resnet18, efficientnet_lite0 or small_cnn (detector/backbones.py)
    pretrained: bool = False              # ImageNet weights where a local copy exists (efficientnet_lite0)
    dropout: float = 0.0                  # on the classifier's input, training only
    init_from: str | None = None          # model folder (model.safetensors) to fine-tune from
    final_align_size: int = 224           # size the shipped model runs at (metadata.align_size)
    phases: list[Phase] = field(default_factory=lambda: [Phase(112, 3), Phase(224, 1, 30000)])
    seed: int = 0                         # validation split, subsets and (unless order_seed is set) batch order
    order_seed: int | None = None         # batch order and augmentation draws only: a later stage that keeps
                                          # the validation split but sees other images than the stage before
    val_fraction: float = 0.05
    max_train_images: int | None = None   # subset of train (smoke tests)
    max_val_images: int | None = None
    batch_size: int = 128
    eval_batch_size: int = 256
    lr: float = 0.1                       # peak of the one-cycle schedule (SGD, Nesterov)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_fraction: float = 0.2
    crop_padding: int = 4                 # random-crop augmentation (reflect padding), 0 disables
    horizontal_flip: bool = True
    jpeg_probability: float = 0.0         # share of training images re-encoded as JPEG ...
    jpeg_quality_min: int = 50            # ... at a quality drawn from [jpeg_quality_min, 95]
    blur_probability: float = 0.0         # share of training images Gaussian-blurred ...
    blur_sigma_max: float = 0.8           # ... with sigma drawn from [0.3, blur_sigma_max] ...
    blur_kernel: int = 3                  # ... and a kernel this many pixels wide; 0 sizes it to the sigma
                                          # (2·ceil(3σ) + 1): the full blur the robustness report applies
    reupload_probability: float = 0.0     # share of training images swapped for a re-uploaded copy ...
    reupload_bank: str | None = None      # ... from this bank (python -m training.reupload)
    distill_weight: float = 0.0           # share of the loss spent matching init_from's (frozen) predictions on
                                          # each image's clean original, the rest cross-entropy on the label:
                                          # a copy learns the original's answer, the original keeps its parent's
    distill_temperature: float = 2.0      # softens both distributions in that match (Hinton et al.)
    precision: str = "auto"               # auto (bf16 on CPU, bf16/fp16 on CUDA), bf16, fp16, fp32
    channels_last: bool = True
    device: str = "auto"
    num_threads: int | None = None
    patience: int = 2                     # early stopping: epochs without val-accuracy improvement
    abstention_coverage: float = 0.975    # share of validation images answered REAL/FAKE; the rest UNCERTAIN
                                          # (sets metadata.min_confidence; 1.0 never abstains)
    log_every: int = 50
    checkpoint_minutes: float | None = 10.0   # also save last.pt inside an epoch once this long has passed since
                                          # the last save (None: at epoch ends only): a stopped CPU run loses
                                          # minutes, not a 40-minute epoch
    version: str = "0.1.0"


def _phase_from(value: Any) -> Phase:
    if isinstance(value, Phase):
        return value
    if isinstance(value, dict):
        unknown = set(value) - {f.name for f in dataclasses.fields(Phase)}
        if unknown:
            raise ValueError(f"unknown phase keys: {sorted(unknown)}")
        return Phase(**value)
    raise ValueError(f"a phase must be a table, got {value!r}")


def parse_phases(text: str) -> list[Phase]:
    """``112:3,224:1:30000`` -> phases (align_size:epochs[:max_images_per_epoch])."""
    phases = []
    for item in text.split(","):
        parts = [int(p) for p in item.split(":")]
        if len(parts) not in (2, 3):
            raise argparse.ArgumentTypeError(f"bad phase {item!r}: use SIZE:EPOCHS[:MAX_IMAGES]")
        phases.append(Phase(*parts))
    return phases


def merge(config: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    """Return ``config`` updated with ``values``; unknown keys raise."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown config keys: {sorted(unknown)}")
    updated = dataclasses.replace(config, **values)
    updated.phases = [_phase_from(p) for p in updated.phases]
    return updated


def load_file(path: Path) -> dict[str, Any]:
    text = Path(path).read_text()
    return tomllib.loads(text) if str(path).endswith(".toml") else json.loads(text)


def saved_config(run: Path) -> TrainConfig:
    """The resolved config a run saved beside its weights (``config.json``): its split seeds, fractions and caps
    are what every later fit and report on its validation split must repeat."""
    return merge(TrainConfig(), load_file(Path(run) / "config.json"))


def _flag_type(field_type: str):
    base = field_type.replace(" | None", "")
    return {"int": int, "float": float, "str": str}.get(base)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, help="TOML or JSON file; its keys override the defaults")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT/last.pt if it exists")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "phases":
            parser.add_argument(flag, type=parse_phases, help="SIZE:EPOCHS[:MAX_IMAGES],... e.g. 112:3,224:1:30000")
        elif f.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            parser.add_argument(flag, type=_flag_type(str(f.type)), default=None)
    return parser


def resolve(argv: list[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    """Defaults, then the file, then the flags that were given."""
    args = build_parser().parse_args(argv)
    config = TrainConfig()
    if args.config:
        config = merge(config, load_file(args.config))
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if getattr(args, f.name) is not None}
    return merge(config, flags), args


def to_json(config: TrainConfig) -> str:
    return json.dumps(dataclasses.asdict(config), indent=2) + "\n"
