"""Train the REAL-vs-FAKE detector on CIFAKE (any folder/zip in the Kaggle layout).

    python -m training.train --config training/configs/first_model.toml --resume

Progressive resizing (phases at growing alignment sizes), one-cycle SGD, bf16/fp16
autocast, channels_last, augmentation (JPEG re-encoding, blur, crops, flips), early stopping
on validation accuracy, a resumable checkpoint every epoch (loadable with
``weights_only=True``), and at the end a temperature fitted on the validation split.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from detector.backbones import load_imagenet_weights
from detector.data import CifakeSource, Sample, dataset_sha256, load_split, stratified_split
from detector.metadata import ModelMetadata
from detector.model import (AlignedClassifier, autocast_dtype, calibrated_probabilities, load_model, predict_logits,
                            save_weights)
from training.augment import AugmentSettings, augment
from training.config import TrainConfig, resolve, to_json
from training.metrics import classification_report, fit_abstention, fit_temperature
from training.reupload import load_bank

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


def plan_epochs(config: TrainConfig, train_count: int) -> list[EpochPlan]:
    plan = []
    for index, phase in enumerate(config.phases):
        images = min(train_count, phase.max_images_per_epoch or train_count)
        plan.extend(EpochPlan(index, phase.align_size, images) for _ in range(phase.epochs))
    return plan


def validate_config(config: TrainConfig) -> None:
    if not config.phases or config.phases[-1].align_size != config.final_align_size:
        raise ValueError("the last phase must train at final_align_size, the size the model ships at")


def train(config: TrainConfig, resume: bool = False) -> Path:
    """Run the whole recipe; returns the output folder holding weights, metadata and logs."""
    validate_config(config)
    started = time.monotonic()
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "config.json").write_text(to_json(config))
    device = pick_device(config.device)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    metadata = ModelMetadata(architecture=config.architecture, align_size=config.final_align_size, version=config.version)

    source = CifakeSource(config.data, metadata.class_names)
    train_samples, val_samples = training_and_validation(source, config)
    log(f"[data] {config.data}: {len(train_samples)} train / {len(val_samples)} validation images, device {device}")
    train_data = load_split(source, train_samples, metadata.input_size, metadata.downsample_filter, "train")
    val_data = load_split(source, val_samples, metadata.input_size, metadata.downsample_filter, "validation")
    data_hash = dataset_sha256(train_data, val_data)

    train_images = torch.from_numpy(train_data.images).to(device)
    reuploads = load_reuploads(config, train_samples, metadata, device)
    train_labels = torch.from_numpy(train_data.labels).to(device)
    val_images = torch.from_numpy(val_data.images)

    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = AlignedClassifier(metadata, config.dropout)
    if config.pretrained:
        loaded = load_imagenet_weights(model.backbone, config.architecture)
        log(f"[init] ImageNet weights for {config.architecture} ({loaded} tensors; new classifier head)")
    if config.init_from:
        model.load_state_dict(load_model(Path(config.init_from))[0].state_dict())
        log(f"[init] weights from {config.init_from}")
    model = model.to(device, memory_format=memory_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                nesterov=True, weight_decay=config.weight_decay)
    plan = plan_epochs(config, len(train_images))
    steps = [math.ceil(e.images / config.batch_size) for e in plan]
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=sum(steps),
                                                    pct_start=config.warmup_fraction)
    amp_dtype = autocast_dtype(device, config.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    state = {"epoch": 0, "phase": 0, "best_val_accuracy": -1.0, "stale_epochs": 0, "skip_phases_before": 0}

    checkpoint_path = output / CHECKPOINT_NAME
    if resume and checkpoint_path.exists():
        checkpoint = torch.load(checkpoint_path, map_location=device, weights_only=True)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        state = json.loads(checkpoint["state"])
        log(f"[resume] from {checkpoint_path}: {state['epoch']} of {len(plan)} epochs done")

    augment_settings = AugmentSettings.from_config(config)
    order_seed = config.seed if config.order_seed is None else config.order_seed
    generator = torch.Generator()
    for epoch in range(state["epoch"], len(plan)):
        epoch_plan = plan[epoch]
        if epoch_plan.phase < state["skip_phases_before"]:
            for _ in range(steps[epoch]):
                scheduler.step()
            state["epoch"] = epoch + 1
            continue
        if epoch_plan.phase != state["phase"]:  # best and patience are tracked per phase
            state.update(phase=epoch_plan.phase, best_val_accuracy=-1.0, stale_epochs=0)
        model.align_size = epoch_plan.align_size
        model.train()
        order = epoch_order(generator, len(train_images), epoch_plan.images, order_seed, epoch).to(device)
        epoch_start, seen, running_loss = time.monotonic(), 0, 0.0
        for step in range(steps[epoch]):
            index = order[step * config.batch_size:(step + 1) * config.batch_size]
            images = augment(train_images[index], augment_settings, generator,
                             None if reuploads is None else reuploads[index])
            images = images.contiguous(memory_format=memory_format)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                loss = F.cross_entropy(model(images), train_labels[index], label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            seen += len(index)
            running_loss += loss.item() * len(index)
            if (step + 1) % config.log_every == 0 or step + 1 == steps[epoch]:
                rate = seen / (time.monotonic() - epoch_start)
                eta = _eta_seconds(plan, epoch, seen, rate)
                log(f"[train] epoch {epoch + 1}/{len(plan)} align {epoch_plan.align_size} "
                    f"step {step + 1}/{steps[epoch]} | {rate:.0f} img/s | loss {running_loss / seen:.4f} "
                    f"| lr {scheduler.get_last_lr()[0]:.4f} | ETA {_clock(eta)}")

        model.eval()
        val_logits = predict_logits(model, val_images, config.eval_batch_size, config.precision)
        val_accuracy = float((val_logits.argmax(1).numpy() == val_data.labels).mean())
        record = {"epoch": epoch + 1, "align_size": epoch_plan.align_size, "train_loss": running_loss / max(seen, 1),
                  "val_accuracy": val_accuracy, "seconds": time.monotonic() - epoch_start}
        with open(output / "train_log.jsonl", "a") as history_file:
            history_file.write(json.dumps(record) + "\n")
        final_phase = epoch_plan.phase == len(config.phases) - 1
        improved = val_accuracy > state["best_val_accuracy"]
        state["stale_epochs"] = 0 if improved else state["stale_epochs"] + 1
        state["best_val_accuracy"] = max(val_accuracy, state["best_val_accuracy"])
        if final_phase and improved:
            save_weights(model, output)
        log(f"[val] epoch {epoch + 1}: accuracy {val_accuracy:.4%} (best {state['best_val_accuracy']:.4%})"
            f"{' -> saved' if final_phase and improved else ''}")
        if state["stale_epochs"] >= config.patience:
            log(f"[early-stop] no improvement for {config.patience} epochs: ending phase {epoch_plan.phase + 1}")
            state["skip_phases_before"] = epoch_plan.phase + 1
        state["epoch"] = epoch + 1
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(), "state": json.dumps(state)}, checkpoint_path)

    return finalise(output, metadata, val_images, val_data.labels, config, data_hash, time.monotonic() - started, device)


def epoch_order(generator: torch.Generator, train_count: int, images: int, order_seed: int, epoch: int) -> torch.Tensor:
    """Reseed ``generator`` for the epoch and draw the training indices it visits; the generator goes on to
    draw the epoch's augmentation.  Everything depends on (order_seed, epoch) alone, so a resumed run sees
    the same batches and a stage with another order_seed reaches images a capped stage left out."""
    generator.manual_seed(order_seed * 1000 + epoch)
    return torch.randperm(train_count, generator=generator)[:images]


def load_reuploads(config: TrainConfig, train_samples: list[Sample], metadata: ModelMetadata,
                   device: torch.device) -> torch.Tensor | None:
    """The training images' re-uploaded copies (training.reupload) when the run swaps some in, else None."""
    if not config.reupload_probability:
        return None
    if not config.reupload_bank:
        raise ValueError("reupload_probability needs reupload_bank: build one with python -m training.reupload")
    copies = torch.from_numpy(load_bank(Path(config.reupload_bank), train_samples, metadata)).to(device)
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


def finalise(output: Path, metadata: ModelMetadata, val_images: torch.Tensor, val_labels: np.ndarray,
             config: TrainConfig, data_hash: str, wall_seconds: float, device: torch.device) -> Path:
    """Fit the temperature on validation and write the metadata that ships with the weights."""
    metadata.save(output)
    model, _ = load_model(output, device)
    logits = predict_logits(model, val_images, config.eval_batch_size, "fp32")
    temperature = fit_temperature(logits, val_labels)
    report = classification_report(logits, val_labels, metadata.class_names, temperature)
    uncalibrated = classification_report(logits, val_labels, metadata.class_names, 1.0)
    abstention = fit_abstention(calibrated_probabilities(logits, temperature).numpy(), val_labels,
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
                    training_data_sha256=data_hash, metrics=metrics)
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
    train(config, resume=args.resume)


if __name__ == "__main__":
    main()
