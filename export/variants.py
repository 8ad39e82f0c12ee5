"""Faster numeric formats of the exported model, each measured for accuracy against fp32.

    python -m export.variants --model model --artifacts build/artifacts --data ../shared/data/cifake

* ``ai_detector_bf16.pt``   TorchScript with weights and activations in bfloat16 (the CPU's AVX-512 BF16)
* ``ai_detector_int8.onnx`` ONNX Runtime static int8 quantisation (QDQ, per-channel weights; VNNI on
                            this CPU), calibrated on training images, never on test images; make build
                            ships it (archive ai_detector_int8) since it passed this comparison

Accuracy of every format is measured on the same fixed sample of official test images through the
handler's backend; ``variants.json`` records it with the verdict: a variant is fit to ship only when
its accuracy is within ``--max-drop`` (0.2 pt) of fp32.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from detector.model import load_model
from export.export import INT8_NAME, ONNX_NAME, TORCHSCRIPT_NAME, calibration_images, export_int8, export_torchscript, parity_images
from handlers.stages import backend_logits, load_backend

BF16_NAME = "ai_detector_bf16.pt"
VARIANTS_NAME = "variants.json"


def export_bf16(model_dir: Path, path: Path) -> Path:
    model, _ = load_model(model_dir)
    return export_torchscript(model.to(torch.bfloat16), path)


def accuracy(artifact: Path, images: np.ndarray, labels: np.ndarray, batch_size: int = 64) -> float:
    backend = load_backend(artifact, torch.device("cpu"), torch.get_num_threads())
    return float((backend_logits(backend, images, batch_size).argmax(1) == labels).mean())


def build_variants(model_dir: Path, artifacts: Path, data: Path, images: int = 2000, calibration_count: int = 512,
                   max_drop: float = 0.002) -> dict[str, dict]:
    """Write the variants next to the fp32 artifacts and measure every format; returns variants.json's content."""
    metadata = load_model(model_dir)[1]
    export_bf16(model_dir, artifacts / BF16_NAME)
    calibration = calibration_images(data, calibration_count, metadata.input_size, metadata.downsample_filter)
    export_int8(artifacts / ONNX_NAME, artifacts / INT8_NAME, calibration)  # as make build does
    test_images, labels = parity_images(data, images, metadata.input_size, metadata.downsample_filter, seed=1)
    report = {}
    for name in (TORCHSCRIPT_NAME, ONNX_NAME, BF16_NAME, INT8_NAME):
        report[name] = {"accuracy": accuracy(artifacts / name, test_images, labels), "images": len(labels),
                        "megabytes": round((artifacts / name).stat().st_size / 2**20, 1)}
    for name in (BF16_NAME, INT8_NAME):
        baseline = report[TORCHSCRIPT_NAME if name.endswith(".pt") else ONNX_NAME]["accuracy"]
        drop = baseline - report[name]["accuracy"]
        report[name].update(drop_vs_fp32=round(drop, 4), fit_to_ship=drop <= max_drop)
    (artifacts / VARIANTS_NAME).write_text(json.dumps(report, indent=2) + "\n")
    for name, row in report.items():
        print(f"[variants] {name}: {row}", file=sys.stderr)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("model"))
    parser.add_argument("--artifacts", type=Path, default=Path("build/artifacts"), help="holds the fp32 ONNX export")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cifake"))
    parser.add_argument("--images", type=int, default=2000, help="test images for the accuracy comparison")
    parser.add_argument("--max-drop", type=float, default=0.002, help="largest accuracy loss a shippable variant may have")
    args = parser.parse_args(argv)
    build_variants(args.model, args.artifacts, args.data, args.images, max_drop=args.max_drop)


if __name__ == "__main__":
    main()
