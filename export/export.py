"""Export a checkpoint to TorchScript and ONNX (fp32, and ONNX int8) and prove they match the eager model.

    python -m export.export --model model --out build/artifacts --parity-data ../shared/data/cifake

Parity runs on every export, on real test images: the max |delta probability| of each fp32
artifact against eager PyTorch is reported and the export fails above the tolerance. The int8
ONNX artifact (static quantisation calibrated on training images) must agree with fp32 on at least
97 % of the labels; its accuracy against fp32 is measured by ``python -m export.variants``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from detector.data import CifakeSource, choose_samples, load_split
from detector.metadata import METADATA_FILENAME
from detector.model import WEIGHTS_FILENAME, AlignedClassifier, calibrated_probabilities, load_model, predict_logits
from detector.spectral import SPECTRAL_FILENAME
from handlers.stages import backend_logits, load_backend

TORCHSCRIPT_NAME = "ai_detector.pt"
ONNX_NAME = "ai_detector.onnx"
INT8_NAME = "ai_detector_int8.onnx"
INT8_MIN_LABEL_AGREEMENT = 0.97   # int8 cannot match fp32 to 1e-3; its accuracy is measured by export.variants
PARITY_NAME = "parity.json"
INPUT_NAME, OUTPUT_NAME = "images", "logits"


class ParityError(RuntimeError):
    """An exported artifact disagrees with the eager model beyond tolerance."""


def export_torchscript(model: AlignedClassifier, path: Path) -> Path:
    scripted = torch.jit.freeze(torch.jit.script(model.eval()))
    scripted.save(str(path))
    return path


def export_onnx(model: AlignedClassifier, path: Path, input_size: int) -> Path:
    """ONNX with a dynamic batch axis and the weights inside the one file."""
    example = torch.zeros(2, 3, input_size, input_size, dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(model.eval(), (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                      dynamic_shapes={"images": {0: batch}}, external_data=False, dynamo=True, verbose=False)
    return path


def parity_images(source_path: Path, count: int, size: int, filter_name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded, class-balanced sample of real test images, aligned exactly as the server does."""
    source = CifakeSource(source_path)
    loaded = load_split(source, choose_samples(source.split("test"), count, seed), size, filter_name)
    return loaded.images, loaded.labels


def probability_agreement(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """How far two runs' probabilities for the same images are apart: largest change, same labels."""
    return {"max_abs_delta_probability": float(np.abs(reference - candidate).max()),
            "label_agreement": float((reference.argmax(1) == candidate.argmax(1)).mean())}


def check_parity(model_dir: Path, artifacts: dict[str, Path], images: np.ndarray, tolerance: float,
                 quantised: frozenset[str] = frozenset(), batch_size: int = 64) -> dict[str, dict[str, float]]:
    """Compare each artifact's calibrated probabilities with eager fp32 (computed once), keyed by the
    given names; raise ParityError when an fp32 artifact exceeds ``tolerance`` or a ``quantised`` one
    (int8 cannot match to 1e-3) agrees on fewer labels than INT8_MIN_LABEL_AGREEMENT."""
    model, metadata = load_model(model_dir)
    eager = calibrated_probabilities(predict_logits(model, torch.from_numpy(images), batch_size), metadata.temperature).numpy()
    results, failures = {}, {}
    for name, artifact in artifacts.items():
        backend = load_backend(artifact, torch.device("cpu"), torch.get_num_threads())
        logits = backend_logits(backend, images, batch_size)
        probabilities = calibrated_probabilities(torch.from_numpy(logits), metadata.temperature).numpy()
        agreement_report = probability_agreement(eager, probabilities)
        delta, agreement = agreement_report["max_abs_delta_probability"], agreement_report["label_agreement"]
        approximate = name in quantised
        limit = {"min_label_agreement": INT8_MIN_LABEL_AGREEMENT} if approximate else {"tolerance": tolerance}
        results[name] = {**agreement_report, "images": int(len(images)), **limit}
        print(f"[parity] {artifact.name}: max |dp| = {delta:.2e} over {len(images)} real test images, "
              f"label agreement {agreement:.2%} ({', '.join(f'{k} {v:g}' for k, v in limit.items())})",
              file=sys.stderr, flush=True)
        if not (agreement >= INT8_MIN_LABEL_AGREEMENT if approximate else delta <= tolerance):
            failures[name] = results[name]
    if failures:
        raise ParityError(f"artifacts disagree with the eager model: {json.dumps(failures)}")
    return results


def calibration_images(data: Path, count: int, size: int, filter_name: str, seed: int = 0) -> np.ndarray:
    """A seeded sample of TRAINING images for the int8 calibration (test images stay unseen)."""
    source = CifakeSource(data)
    return load_split(source, choose_samples(source.split("train"), count, seed), size, filter_name).images


def export_int8(onnx_fp32: Path, path: Path, calibration: np.ndarray, batch_size: int = 32) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quant_pre_process, quantize_static

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{INPUT_NAME: calibration[i:i + batch_size]} for i in range(0, len(calibration), batch_size)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(onnx_fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(path), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return path


def export_all(model_dir: Path, out_dir: Path, parity_data: Path, parity_count: int = 256,
               tolerance: float = 1e-3, int8: bool = True) -> dict[str, Path]:
    """Write the artifacts, the metadata beside them, and the parity report; fail loudly on mismatch.
    ``int8=False`` skips the int8 artifact (a barely trained model's near-0.5 answers flip under int8)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model, metadata = load_model(model_dir)
    paths = {
        "torchscript": export_torchscript(model, out_dir / TORCHSCRIPT_NAME),
        "onnx": export_onnx(model, out_dir / ONNX_NAME, metadata.input_size),
    }
    shutil.copy2(Path(model_dir) / METADATA_FILENAME, out_dir / METADATA_FILENAME)
    shutil.copy2(Path(model_dir) / WEIGHTS_FILENAME, out_dir / WEIGHTS_FILENAME)  # Grad-CAM needs the eager model
    (out_dir / SPECTRAL_FILENAME).unlink(missing_ok=True)
    if (Path(model_dir) / SPECTRAL_FILENAME).exists():  # the frequency second opinion, where one was fitted
        shutil.copy2(Path(model_dir) / SPECTRAL_FILENAME, out_dir / SPECTRAL_FILENAME)
    if int8:
        calibration = calibration_images(parity_data, 512, metadata.input_size, metadata.downsample_filter)
        paths["onnx_int8"] = export_int8(paths["onnx"], out_dir / INT8_NAME, calibration)
    images, _ = parity_images(parity_data, parity_count, metadata.input_size, metadata.downsample_filter)
    report = check_parity(model_dir, paths, images, tolerance, quantised=frozenset({"onnx_int8"}))
    (out_dir / PARITY_NAME).write_text(json.dumps(report, indent=2) + "\n")
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("model"), help="folder with model.safetensors + metadata.json")
    parser.add_argument("--out", type=Path, default=Path("build/artifacts"))
    parser.add_argument("--parity-data", type=Path, default=Path("../shared/data/cifake"),
                        help="CIFAKE folder/zip whose test split feeds the parity check")
    parser.add_argument("--parity-images", type=int, default=256)
    parser.add_argument("--tolerance", type=float, default=1e-3, help="max |delta probability| allowed (fp32)")
    args = parser.parse_args(argv)
    try:
        paths = export_all(args.model, args.out, args.parity_data, args.parity_images, args.tolerance)
    except ParityError as exc:
        sys.exit(f"[export] PARITY FAILED: {exc}")
    except FileNotFoundError as exc:
        sys.exit(f"[export] {exc}\n[export] parity needs real CIFAKE test images: pass --parity-data PATH")
    for name, path in paths.items():
        print(f"[export] {name}: {path} ({path.stat().st_size / 2**20:.1f} MiB)", file=sys.stderr)


if __name__ == "__main__":
    main()
