"""Train the REAL-vs-FAKE detector on CIFAKE (any folder/zip in the Kaggle layout).

    python -m training.train --config training/recipe/01_first_model.toml --resume

Progressive resizing (phases at growing alignment sizes), one-cycle SGD, bf16/fp16
autocast, channels_last, augmentation (JPEG re-encoding, blur, crops, flips), early stopping
on validation accuracy, a resumable checkpoint after every epoch and every ``checkpoint_minutes`` inside one
(loadable with ``weights_only=True``), and at the end a temperature fitted on the validation split.

``train`` composes the steps: ``load_data``, ``build_state`` (or ``resume_state``), then per epoch
``run_epoch``, ``evaluate``, ``end_phase_if_stale`` and ``save_checkpoint``, and ``finalise``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from detector.data import CifakeSource, Sample, content_sha256, dataset_sha256, load_split, stratified_split
from detector.metadata import ModelMetadata
from detector.model import (WEIGHTS_FILENAME, AlignedClassifier, autocast_dtype, calibrated_probabilities, load_model,
                            load_weights, predict_logits, save_weights)
from export.domain_gate import load_imagenet_weights
from training.augment import AugmentSettings, augment
from training.config import TrainConfig, resolve, to_json
from training.metrics import classification_report, fit_abstention, fit_temperature
from training.reupload import load_bank, write_bank

CHECKPOINT_NAME = "last.pt"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass(frozen=True)
class EpochPlan:
    phase: int
    align_size: int
    images: int


def epoch_phases(config: TrainConfig) -> list[int]:
    """The phase each epoch of the run belongs to, in order."""
    return [index for index, phase in enumerate(config.phases) for _ in range(phase.epochs)]


def plan_epochs(config: TrainConfig, train_count: int) -> list[EpochPlan]:
    plan = []
    for index in epoch_phases(config):
        phase = config.phases[index]
        plan.append(EpochPlan(index, phase.align_size, min(train_count, phase.max_images_per_epoch or train_count)))
    return plan


def steps_in(epoch: EpochPlan, batch_size: int) -> int:
    return math.ceil(epoch.images / batch_size)


def validate_config(config: TrainConfig) -> None:
    if not config.phases or config.phases[-1].align_size != config.final_align_size:
        raise ValueError("the last phase must train at final_align_size, the size the model ships at")
    if not 0.0 <= config.distill_weight <= 1.0 or config.distill_temperature <= 0:
        raise ValueError(f"distill_weight must be in [0, 1] and distill_temperature > 0, got "
                         f"{config.distill_weight} and {config.distill_temperature}")
    if config.distill_weight and not config.init_from:
        raise ValueError("distill_weight distils the init_from model: set init_from")
    if config.blur_kernel != 0 and (config.blur_kernel < 3 or config.blur_kernel % 2 == 0):
        raise ValueError(f"blur_kernel must be 0 (sized to each sigma) or an odd number >= 3, got {config.blur_kernel}")
    if config.checkpoint_minutes is not None and config.checkpoint_minutes <= 0:
        raise ValueError(f"checkpoint_minutes must be > 0 (or unset: epoch ends only), got {config.checkpoint_minutes}")


@dataclass
class TrainingData:
    """The run's images: training on the device it trains on, validation on the host (evaluated in batches)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    reuploads: torch.Tensor | None
    val_images: torch.Tensor
    val_labels: np.ndarray
    sha256: str


@dataclass
class Progress:
    """Where a run stands: the JSON part of every checkpoint (``state``), so its field names are the checkpoint
    format's and must not change; a new field comes last, with a default, so older checkpoints still load."""

    epoch: int = 0                  # epochs done, skipped ones included: the next epoch's index in the plan
    phase: int = 0                  # the phase best_val_accuracy and stale_epochs belong to
    best_val_accuracy: float = -1.0
    stale_epochs: int = 0           # epochs since the phase's best (patience)
    skip_phases_before: int = 0     # phases before this one were ended early
    steps_done: int = 0             # of epoch ``epoch``, saved inside it (checkpoint_minutes); 0 at epoch ends ...
    loss_sum: float = 0.0           # ... with what its training-loss mean and its time in train_log.jsonl need
    seconds: float = 0.0

    def end_epoch(self) -> None:
        """Clear the position inside an epoch once the epoch is over."""
        self.steps_done, self.loss_sum, self.seconds = 0, 0.0, 0.0

    def skips(self, phase: int) -> bool:
        return phase < self.skip_phases_before

    def epochs_left(self, config: TrainConfig) -> int:
        """Epochs the run still has to train: 0 once it has finished (phases ended early count as done)."""
        return sum(not self.skips(phase) for phase in epoch_phases(config)[self.epoch:])

    def enter_phase(self, phase: int) -> None:
        """Best accuracy and patience are tracked per phase: a new phase starts both afresh."""
        if phase != self.phase:
            self.phase, self.best_val_accuracy, self.stale_epochs = phase, -1.0, 0

    def record(self, val_accuracy: float) -> bool:
        """Count an epoch's validation accuracy against the phase's best; True when it improves on it."""
        improved = val_accuracy > self.best_val_accuracy
        self.stale_epochs = 0 if improved else self.stale_epochs + 1
        self.best_val_accuracy = max(val_accuracy, self.best_val_accuracy)
        return improved


@dataclass
class TrainState:
    """What a run trains and where it stands: the checkpoint's content, so that a resumed run continues where it
    stopped. The batch order and augmentation are reseeded every epoch (``epoch_order``); inside an epoch the
    augmentation generator's state is saved with the position (``epoch_generator``). Dropout draws from torch's
    global RNG, which is not saved, so only runs without dropout resume bit-identically."""

    model: AlignedClassifier
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    device: torch.device
    progress: Progress
    teacher: AlignedClassifier | None = None   # frozen init_from model when distilling (not checkpointed: rebuilt)
    epoch_generator: torch.Tensor | None = None   # augmentation RNG state at progress.steps_done, inside an epoch


def load_data(config: TrainConfig, metadata: ModelMetadata, device: torch.device) -> TrainingData:
    """The run's training and validation images (seeded subsets, ``training_and_validation``) and their hash."""
    source = CifakeSource(config.data, metadata.class_names)
    train_samples, val_samples = training_and_validation(source, config)
    log(f"[data] {config.data}: {len(train_samples)} train / {len(val_samples)} validation images, device {device}")
    train_data = load_split(source, train_samples, metadata.input_size, metadata.downsample_filter, "train")
    val_data = load_split(source, val_samples, metadata.input_size, metadata.downsample_filter, "validation")
    train_images = torch.from_numpy(train_data.images).to(device)
    reuploads = load_reuploads(config, source, train_samples, metadata, device)
    return TrainingData(train_images, torch.from_numpy(train_data.labels).to(device), reuploads,
                        torch.from_numpy(val_data.images), val_data.labels, dataset_sha256(train_data, val_data))


def build_state(config: TrainConfig, metadata: ModelMetadata, total_steps: int, device: torch.device) -> TrainState:
    """A fresh run: the network (from scratch, ImageNet or ``init_from``), SGD and one one-cycle schedule
    over every step of the plan. Draws the initial weights from torch's global RNG (seeded by ``train``)."""
    model = AlignedClassifier(metadata, config.dropout)
    if config.pretrained:
        loaded = load_imagenet_weights(model.backbone, config.architecture)
        log(f"[init] ImageNet weights for {config.architecture} ({loaded} tensors; new classifier head)")
    if config.init_from:
        model.load_state_dict(load_weights(Path(config.init_from)))
        log(f"[init] weights from {config.init_from}")
    model = model.to(device, memory_format=memory_format(config))
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                nesterov=True, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps,
                                                    pct_start=config.warmup_fraction)
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype(device, config.precision) == torch.float16)
    return TrainState(model, optimizer, scheduler, scaler, device, Progress(), build_teacher(config, metadata, device))


def build_teacher(config: TrainConfig, metadata: ModelMetadata, device: torch.device) -> AlignedClassifier | None:
    """The frozen ``init_from`` model whose answers on clean originals the run distils."""
    if not config.distill_weight:
        return None
    teacher = AlignedClassifier(metadata)
    teacher.load_state_dict(load_weights(Path(config.init_from)))
    log(f"[init] distilling {config.init_from} (weight {config.distill_weight}, temperature {config.distill_temperature})")
    return teacher.to(device, memory_format=memory_format(config)).eval().requires_grad_(False)


def training_loss(logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None,
                  config: TrainConfig) -> torch.Tensor:
    """Cross-entropy on the labels, blended with the temperature-scaled KL divergence to the teacher's
    logits (scaled by T² so its gradients keep their size whatever the temperature)."""
    loss = F.cross_entropy(logits.float(), labels)
    if teacher_logits is not None:
        temperature = config.distill_temperature
        soft = F.kl_div(F.log_softmax(logits.float() / temperature, 1),
                        F.log_softmax(teacher_logits.float() / temperature, 1),
                        log_target=True, reduction="batchmean") * temperature ** 2
        loss = (1 - config.distill_weight) * loss + config.distill_weight * soft
    return loss


def resume_state(state: TrainState, checkpoint_path: Path) -> None:
    """Load a checkpoint written by ``save_checkpoint``; older ones (epoch ends only) load as they are."""
    checkpoint = torch.load(checkpoint_path, map_location=state.device, weights_only=True)
    state.model.load_state_dict(checkpoint["model"])
    state.optimizer.load_state_dict(checkpoint["optimizer"])
    state.scheduler.load_state_dict(checkpoint["scheduler"])
    state.scaler.load_state_dict(checkpoint["scaler"])
    state.progress = Progress(**json.loads(checkpoint["state"]))
    state.epoch_generator = checkpoint.get("epoch_generator")


def read_progress(checkpoint_path: Path) -> Progress:
    """A checkpoint's position alone, without building the network."""
    return Progress(**json.loads(torch.load(checkpoint_path, map_location="cpu", weights_only=True)["state"]))


def save_checkpoint(state: TrainState, checkpoint_path: Path) -> None:
    """Everything ``resume_state`` needs, pickle-free (loadable with ``weights_only=True``). Written beside and
    renamed over the old one, so a run killed while saving still has its previous checkpoint."""
    checkpoint = {"model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
                  "scheduler": state.scheduler.state_dict(), "scaler": state.scaler.state_dict(),
                  "state": json.dumps(asdict(state.progress))}
    if state.progress.steps_done:
        checkpoint["epoch_generator"] = state.epoch_generator
    partial = checkpoint_path.with_name(checkpoint_path.name + ".partial")
    torch.save(checkpoint, partial)
    os.replace(partial, checkpoint_path)


def skip_epoch(state: TrainState, epoch: EpochPlan, config: TrainConfig) -> None:
    """An epoch of a phase that ended early: no training, but the schedule moves on as if it had run."""
    for _ in range(steps_in(epoch, config.batch_size)):
        state.scheduler.step()
    state.progress.epoch += 1


def run_epoch(state: TrainState, data: TrainingData, config: TrainConfig, plan: list[EpochPlan],
              checkpoint_path: Path) -> float:
    """Train the plan's next epoch (``state.progress.epoch``) from the step a checkpoint stopped at, saving one
    every ``config.checkpoint_minutes``; returns the epoch's mean training loss."""
    progress = state.progress
    index = progress.epoch
    epoch = plan[index]
    steps = steps_in(epoch, config.batch_size)
    model, optimizer, scheduler, scaler = state.model, state.optimizer, state.scheduler, state.scaler
    amp_dtype = autocast_dtype(state.device, config.precision)
    settings = AugmentSettings.from_config(config)
    generator = torch.Generator()
    model.align_size = epoch.align_size
    if state.teacher is not None:
        state.teacher.align_size = epoch.align_size
    model.train()
    order_seed = config.seed if config.order_seed is None else config.order_seed
    order = epoch_order(generator, len(data.train_images), epoch.images, order_seed, index).to(state.device)
    if progress.steps_done:
        generator.set_state(state.epoch_generator)
    started = last_save = time.monotonic()
    seen = seen_before = progress.steps_done * config.batch_size   # full batches: only an epoch's last is short
    seconds_before = progress.seconds
    for step in range(progress.steps_done, steps):
        batch = order[step * config.batch_size:(step + 1) * config.batch_size]
        images = augment(data.train_images[batch], settings, generator,
                         None if data.reuploads is None else data.reuploads[batch])
        images = images.contiguous(memory_format=memory_format(config))
        with torch.autocast(state.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            teacher_logits = None
            if state.teacher is not None:
                with torch.no_grad():
                    teacher_logits = state.teacher(data.train_images[batch].contiguous(memory_format=memory_format(config)))
            logits = model(images)
            loss = training_loss(logits, data.train_labels[batch], teacher_logits, config)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        progress.steps_done = step + 1
        progress.loss_sum += loss.item() * len(batch)
        progress.seconds = seconds_before + time.monotonic() - started
        seen += len(batch)
        if (step + 1) % config.log_every == 0 or step + 1 == steps:
            rate = (seen - seen_before) / (time.monotonic() - started)
            eta = _eta_seconds(plan, index, seen, rate)
            log(f"[train] epoch {index + 1}/{len(plan)} align {epoch.align_size} "
                f"step {step + 1}/{steps} | {rate:.0f} img/s | loss {progress.loss_sum / seen:.4f} "
                f"| lr {scheduler.get_last_lr()[0]:.4f} | ETA {_clock(eta)}")
        if (config.checkpoint_minutes is not None and step + 1 < steps
                and time.monotonic() - last_save >= config.checkpoint_minutes * 60):
            state.epoch_generator = generator.get_state()
            save_checkpoint(state, checkpoint_path)
            last_save = time.monotonic()
            log(f"[checkpoint] epoch {index + 1} step {step + 1}/{steps} saved to {checkpoint_path}")
    return progress.loss_sum / max(seen, 1)


def evaluate(state: TrainState, data: TrainingData, config: TrainConfig) -> float:
    """Validation accuracy at the align size the model was just trained at."""
    state.model.eval()
    logits = predict_logits(state.model, data.val_images, config.eval_batch_size, config.precision)
    return float((logits.argmax(1).numpy() == data.val_labels).mean())


def end_phase_if_stale(progress: Progress, patience: int) -> bool:
    """Early stopping: after ``patience`` epochs without a better validation accuracy the current phase ends
    (its remaining epochs are skipped) and the next one starts; True when it ended."""
    if progress.stale_epochs < patience:
        return False
    progress.skip_phases_before = progress.phase + 1
    return True


def append_history(output: Path, record: dict[str, Any]) -> None:
    """One line per trained epoch in ``train_log.jsonl``: the run's history survives a stop and a resume."""
    with open(output / "train_log.jsonl", "a") as history_file:
        history_file.write(json.dumps(record) + "\n")


def memory_format(config: TrainConfig) -> torch.memory_format:
    return torch.channels_last if config.channels_last else torch.contiguous_format


def train(config: TrainConfig, resume: bool = False, recipe_step: str | None = None) -> Path:
    """Run the whole recipe; returns the output folder holding weights, metadata and logs. ``recipe_step`` (the
    config file's name) and the ``init_from`` weights' SHA-256 go into metadata.json: the model's lineage."""
    validate_config(config)
    started = time.monotonic()
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "config.json").write_text(to_json(config))
    device = pick_device(config.device)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    metadata = ModelMetadata(architecture=config.architecture, align_size=config.final_align_size, version=config.version,
                             parent_sha256=parent_sha256(config), recipe_step=recipe_step)
    data = load_data(config, metadata, device)
    plan = plan_epochs(config, len(data.train_images))
    state = build_state(config, metadata, sum(steps_in(epoch, config.batch_size) for epoch in plan), device)
    checkpoint_path = output / CHECKPOINT_NAME
    if resume and checkpoint_path.exists():
        resume_state(state, checkpoint_path)
        done = state.progress
        inside = f", epoch {done.epoch + 1} at step {done.steps_done}" if done.steps_done else ""
        log(f"[resume] from {checkpoint_path}: {done.epoch} of {len(plan)} epochs done{inside}")

    progress = state.progress
    while progress.epoch < len(plan):
        epoch = plan[progress.epoch]
        if progress.skips(epoch.phase):
            skip_epoch(state, epoch, config)
            continue
        progress.enter_phase(epoch.phase)
        train_loss = run_epoch(state, data, config, plan, checkpoint_path)
        evaluation_start = time.monotonic()
        val_accuracy = evaluate(state, data, config)
        append_history(output, {"epoch": progress.epoch + 1, "align_size": epoch.align_size, "train_loss": train_loss,
                                "val_accuracy": val_accuracy,
                                "seconds": progress.seconds + time.monotonic() - evaluation_start})
        progress.end_epoch()
        improved = progress.record(val_accuracy)
        final_phase = epoch.phase == len(config.phases) - 1
        if final_phase and improved:
            save_weights(state.model, output)
        log(f"[val] epoch {progress.epoch + 1}: accuracy {val_accuracy:.4%} (best {progress.best_val_accuracy:.4%})"
            f"{' -> saved' if final_phase and improved else ''}")
        if end_phase_if_stale(progress, config.patience):
            log(f"[early-stop] no improvement for {config.patience} epochs: ending phase {epoch.phase + 1}")
        progress.epoch += 1
        save_checkpoint(state, checkpoint_path)

    return finalise(output, metadata, data, config, time.monotonic() - started, device)


def parent_sha256(config: TrainConfig) -> str | None:
    """SHA-256 of the weights the run starts from (``init_from``); None from scratch or from ImageNet."""
    if not config.init_from:
        return None
    return content_sha256((Path(config.init_from) / WEIGHTS_FILENAME).read_bytes())


def epoch_order(generator: torch.Generator, train_count: int, images: int, order_seed: int, epoch: int) -> torch.Tensor:
    """Reseed ``generator`` for the epoch and draw the training indices it visits; the generator goes on to
    draw the epoch's augmentation.  Everything depends on (order_seed, epoch) alone, so a resumed run sees
    the same batches and a stage with another order_seed reaches images a capped stage left out."""
    generator.manual_seed(order_seed * 1000 + epoch)
    return torch.randperm(train_count, generator=generator)[:images]


def load_reuploads(config: TrainConfig, source: CifakeSource, train_samples: list[Sample], metadata: ModelMetadata,
                   device: torch.device) -> torch.Tensor | None:
    """The training images' re-uploaded copies (training.reupload) when the run swaps some in, else None."""
    if not config.reupload_probability:
        return None
    if not config.reupload_bank:
        raise ValueError("reupload_probability needs reupload_bank: a path (built on first use) or a bank "
                         "made by python -m training.reupload")
    bank = Path(config.reupload_bank)
    if not bank.exists():
        log(f"[data] no re-upload bank at {bank}: building one copy of each training image (slow, once)")
        write_bank(bank, source, train_samples, copies=1, seed=config.seed, workers=os.cpu_count() or 1,
                   metadata=metadata)
    copies = torch.from_numpy(load_bank(bank, train_samples, metadata)).to(device)
    log(f"[data] {copies.shape[1]} re-uploaded copies per training image from {config.reupload_bank}, "
        f"swapped in for {config.reupload_probability:.0%} of the images")
    return copies


def training_and_validation(source: CifakeSource, config: TrainConfig) -> tuple[list[Sample], list[Sample]]:
    """The run's training images and its validation split (stratified, seeded, carved from train), each
    capped by ``max_train_images`` / ``max_val_images``: the same lists for every run with the same seed."""
    samples = source.split("train")
    train_idx, val_idx = stratified_split(np.array([s.label for s in samples]), config.val_fraction, config.seed)
    rng = np.random.default_rng(config.seed)
    if config.max_train_images:
        train_idx = np.sort(rng.choice(train_idx, min(config.max_train_images, len(train_idx)), replace=False))
    if config.max_val_images:
        val_idx = np.sort(rng.choice(val_idx, min(config.max_val_images, len(val_idx)), replace=False))
    return [samples[i] for i in train_idx], [samples[i] for i in val_idx]


def finalise(output: Path, metadata: ModelMetadata, data: TrainingData, config: TrainConfig, wall_seconds: float,
             device: torch.device) -> Path:
    """Fit the temperature on validation and write the metadata that ships with the weights."""
    metadata.save(output)
    model, _ = load_model(output, device)
    logits = predict_logits(model, data.val_images, config.eval_batch_size, "fp32")
    temperature = fit_temperature(logits, data.val_labels)
    report = classification_report(logits, data.val_labels, metadata.class_names, temperature)
    uncalibrated = classification_report(logits, data.val_labels, metadata.class_names, 1.0)
    abstention = fit_abstention(calibrated_probabilities(logits, temperature).numpy(), data.val_labels,
                                config.abstention_coverage)
    metrics = {
        "validation": {k: report[k] for k in ("count", "accuracy", "roc_auc", "ece", "nll")},
        "validation_ece_before_calibration": uncalibrated["ece"],
        "abstention": abstention,
        "training": {"wall_seconds": round(wall_seconds, 1), "device": str(device), "threads": torch.get_num_threads(),
                     "machine": machine_description(),
                     "torch": torch.__version__},
    }
    final = replace(metadata, temperature=temperature, min_confidence=abstention["min_confidence"],
                    training_data_sha256=data.sha256, metrics=metrics)
    final.save(output)
    log(f"[done] validation accuracy {report['accuracy']:.4%}, temperature {temperature:.3f}, "
        f"ECE {uncalibrated['ece']:.4f} -> {report['ece']:.4f}, UNCERTAIN below confidence "
        f"{abstention['min_confidence']:.4f} ({abstention['coverage']:.2%} answered); wrote {output}")
    return output


def machine_description() -> str:
    """CPU model and core count (and the GPU when one is used), for reproducibility notes."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu} x{os.cpu_count()}{gpu}"


def _eta_seconds(plan: list[EpochPlan], epoch: int, seen: int, rate: float) -> float:
    """Remaining time, scaling the measured rate by pixel count for later phases."""
    current = plan[epoch]
    remaining = (current.images - seen) / rate
    for later in plan[epoch + 1:]:
        remaining += later.images / rate * (later.align_size / current.align_size) ** 2
    return remaining


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def main(argv: list[str] | None = None) -> None:
    config, args = resolve(argv)
    train(config, resume=args.resume, recipe_step=args.config.name if args.config else None)


if __name__ == "__main__":
    main()
