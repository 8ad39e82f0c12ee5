"""Faster numeric formats of the exported model, each measured for accuracy against fp32.

    python -m export.variants --model model --artifacts build/artifacts --data ../shared/data/cifake

* ``ai_detector_bf16.pt``   TorchScript with weights and activations in bfloat16 (fast only where the CPU
                            has AVX-512 BF16 or AMX; emulated, and slow, elsewhere)
* ``ai_detector_int8.onnx`` ONNX Runtime static int8 quantisation (QDQ, per-channel 7-bit weights, so no
                            CPU's kernels saturate), calibrated on training images, never on test images;
                            make build ships it (archive ai_detector_int8) since it passed this comparison

Accuracy of every format is measured on the same fixed sample of official test images through the
handler's backend; ``variants.json`` records it with the verdict: a variant is fit to ship only when
its accuracy is within ``--max-drop`` (0.2 pt) of fp32. The report names the CPU it was measured on:
int8 and bf16 results differ between CPU families. ``--formats onnx,int8`` measures only those
(``--images 0`` is the full test split).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from detector.hardware import cpu_info, cpu_line
from detector.model import load_model
from export.export import INT8_NAME, ONNX_NAME, TORCHSCRIPT_NAME, calibration_images, export_int8, export_torchscript, parity_images
from detector.backends import batched_outputs, load_backend

BF16_NAME = "ai_detector_bf16.pt"
VARIANTS_NAME = "variants.json"


def export_bf16(model_dir: Path, path: Path) -> Path:
    model, _ = load_model(model_dir)
    return export_torchscript(model.to(torch.bfloat16), path)


FORMATS = {"torchscript": TORCHSCRIPT_NAME, "onnx": ONNX_NAME, "bf16": BF16_NAME, "int8": INT8_NAME}
FP32_OF = {BF16_NAME: TORCHSCRIPT_NAME, INT8_NAME: ONNX_NAME}   # the fp32 artifact each variant is judged against


def build_variants(model_dir: Path, artifacts: Path, data: Path, images: int | None = 2000, calibration_count: int = 512,
                   max_drop: float = 0.002, formats: tuple[str, ...] = tuple(FORMATS)) -> dict[str, dict]:
    """Write the variants next to the fp32 artifacts and measure ``formats`` (``images=None``: the whole
    test split); returns variants.json's content."""
    metadata = load_model(model_dir)[1]
    names = [FORMATS[f] for f in formats]
    if BF16_NAME in names:
        export_bf16(model_dir, artifacts / BF16_NAME)
    if INT8_NAME in names:
        calibration = calibration_images(data, calibration_count, metadata.input_size, metadata.downsample_filter)
        export_int8(artifacts / ONNX_NAME, artifacts / INT8_NAME, calibration)  # as make build does
    test_images, labels = parity_images(data, images, metadata.input_size, metadata.downsample_filter, seed=1)
    predictions = {}
    report: dict[str, dict] = {"cpu": cpu_info()}
    for name in names:
        backend = load_backend(artifacts / name, torch.device("cpu"), torch.get_num_threads())
        predictions[name] = batched_outputs(backend, test_images, 64).argmax(1)
        report[name] = {"accuracy": float((predictions[name] == labels).mean()), "images": len(labels),
                        "megabytes": round((artifacts / name).stat().st_size / 2**20, 1)}
        print(f"[variants] {name}: {report[name]} on {cpu_line(report['cpu'])}", file=sys.stderr, flush=True)
    for name, fp32 in FP32_OF.items():
        if name in predictions and fp32 in predictions:
            drop = report[fp32]["accuracy"] - report[name]["accuracy"]
            report[name].update(drop_vs_fp32=round(drop, 4), fit_to_ship=drop <= max_drop,
                                label_agreement_vs_fp32=float((predictions[name] == predictions[fp32]).mean()))
    (artifacts / VARIANTS_NAME).write_text(json.dumps(report, indent=2) + "\n")
    for name, row in report.items():
        print(f"[variants] {name}: {row}", file=sys.stderr)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("model"))
    parser.add_argument("--artifacts", type=Path, default=Path("build/artifacts"), help="holds the fp32 ONNX export")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cifake"))
    parser.add_argument("--images", type=int, default=2000, help="test images for the accuracy comparison (0: all)")
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated, from {', '.join(FORMATS)}")
    parser.add_argument("--max-drop", type=float, default=0.002, help="largest accuracy loss a shippable variant may have")
    args = parser.parse_args(argv)
    build_variants(args.model, args.artifacts, args.data, args.images or None, max_drop=args.max_drop,
                   formats=tuple(args.formats.split(",")))


if __name__ == "__main__":
    main()
