"""Export a checkpoint to TorchScript and ONNX (fp32, and ONNX int8) and prove they match the eager model.

    python -m export.export --model model --out build/artifacts --parity-data ../shared/data/cifake

Parity runs on every export, on real test images: the max |delta probability| of each fp32
artifact against eager PyTorch is reported and the export fails above the tolerance. The int8
ONNX artifact (static quantisation calibrated on training images, 7-bit weights so that no CPU's
int8 kernels saturate) must agree with fp32 on at least 99 % of the labels and move probabilities
by at most 0.005 on average; its accuracy against fp32 is measured by ``python -m export.variants``.
The first 64 parity images and their eager answers are stored beside the artifacts
(``selfcheck.safetensors``) so that every worker repeats the check on the CPU it runs on. A model with a
domain gate gets its files too, proven by ``export.domain_gate``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from detector.data import CifakeSource, choose_samples, load_split
from detector.domain import GATE_FILES
from detector.hardware import cpu_info, cpu_line
from detector.metadata import METADATA_FILENAME, ModelMetadata
from detector.model import WEIGHTS_FILENAME, calibrated_probabilities, load_model, predict_logits
from detector.spectral import SPECTRAL_FILENAME
from detector.selfcheck import (MAX_MEAN_ABS_DELTA, MIN_LABEL_AGREEMENT, SelfCheck, probability_agreement,
                                within_quantisation_tolerance)
from detector.backends import batched_outputs, load_backend
from export.convert import ParityError, export_int8, export_onnx, export_torchscript
from export.domain_gate import copy_proven

TORCHSCRIPT_NAME = "ai_detector.pt"
ONNX_NAME = "ai_detector.onnx"
INT8_NAME = "ai_detector_int8.onnx"
SELFCHECK_IMAGES = 64
PARITY_NAME = "parity.json"


def parity_images(source_path: Path, count: int | None, size: int, filter_name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded, class-balanced sample of real test images, aligned exactly as the server does."""
    source = CifakeSource(source_path)
    loaded = load_split(source, choose_samples(source.split("test"), count, seed), size, filter_name)
    return loaded.images, loaded.labels


def eager_probabilities(model_dir: Path, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The reference every artifact is held to: the eager fp32 model's calibrated probabilities."""
    model, metadata = load_model(model_dir)
    return calibrated_probabilities(predict_logits(model, torch.from_numpy(images), batch_size), metadata.temperature).numpy()


def unfused_onnx_logits(artifact: Path, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """A quantised ONNX graph run node by node (QuantizeLinear -> DequantizeLinear -> fp32 operator), which
    no CPU's integer kernel can saturate: the reference that tells rounding from kernel saturation."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(artifact), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: images[i:i + batch_size]})[0] for i in range(0, len(images), batch_size)])


def check_parity(model_dir: Path, artifacts: dict[str, Path], images: np.ndarray, tolerance: float,
                 quantised: frozenset[str] = frozenset(), batch_size: int = 64,
                 reference: np.ndarray | None = None) -> dict[str, dict]:
    """Compare each artifact's calibrated probabilities with eager fp32 (``reference``, computed once if not
    given), keyed by the given names; raise ParityError when an fp32 artifact exceeds ``tolerance`` or a
    ``quantised`` one (int8 cannot match to 1e-3) falls outside the quantisation tolerance. Quantised
    artifacts also report how far their fused int8 kernels are from the unfused graph on this CPU."""
    temperature = ModelMetadata.load(model_dir).temperature
    eager = eager_probabilities(model_dir, images, batch_size) if reference is None else reference
    cpu = cpu_info()   # int8 results depend on it: every row names it
    results, failures = {}, {}
    for name, artifact in artifacts.items():
        backend = load_backend(artifact, torch.device("cpu"), torch.get_num_threads())
        logits = batched_outputs(backend, images, batch_size)
        probabilities = calibrated_probabilities(torch.from_numpy(logits), temperature).numpy()
        agreement = probability_agreement(eager, probabilities)
        approximate = name in quantised
        if approximate:
            limit = {"max_mean_abs_delta": MAX_MEAN_ABS_DELTA, "min_label_agreement": MIN_LABEL_AGREEMENT}
            if artifact.suffix == ".onnx":
                unfused = calibrated_probabilities(torch.from_numpy(unfused_onnx_logits(artifact, images, batch_size)),
                                                   temperature).numpy()
                limit["kernels_vs_unfused_max_abs_delta"] = probability_agreement(unfused, probabilities)["max_abs_delta_probability"]
            passed = within_quantisation_tolerance(agreement)
        else:
            limit, passed = {"tolerance": tolerance}, agreement["max_abs_delta_probability"] <= tolerance
        results[name] = {**agreement, "images": int(len(images)), **limit, "cpu": cpu}
        print(f"[parity] {artifact.name}: max |dp| = {agreement['max_abs_delta_probability']:.2e}, mean "
              f"{agreement['mean_abs_delta_probability']:.2e} over {len(images)} real test images, label agreement "
              f"{agreement['label_agreement']:.2%} ({', '.join(f'{k} {v:.3g}' for k, v in limit.items())}) on "
              f"{cpu_line(cpu)}", file=sys.stderr, flush=True)
        if not passed:
            failures[name] = results[name]
    if failures:
        raise ParityError(f"artifacts disagree with the eager model: {json.dumps(failures)}")
    return results


def calibration_images(data: Path, count: int, size: int, filter_name: str, seed: int = 0) -> np.ndarray:
    """A seeded sample of TRAINING images for the int8 calibration (test images stay unseen)."""
    source = CifakeSource(data)
    return load_split(source, choose_samples(source.split("train"), count, seed), size, filter_name).images


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
    for name in GATE_FILES:
        (out_dir / name).unlink(missing_ok=True)
    gate_check = None
    if metadata.domain_gate is not None:   # the out-of-domain gate's files, built and proven (export.domain_gate)
        gate_check = copy_proven(metadata, parity_data, out_dir)
    if int8:
        calibration = calibration_images(parity_data, 512, metadata.input_size, metadata.downsample_filter)
        paths["onnx_int8"] = export_int8(paths["onnx"], out_dir / INT8_NAME, calibration)
    images, _ = parity_images(parity_data, parity_count, metadata.input_size, metadata.downsample_filter)
    eager = eager_probabilities(model_dir, images)
    SelfCheck(images[:SELFCHECK_IMAGES], eager[:SELFCHECK_IMAGES]).save(out_dir)   # replayed by every worker
    report = check_parity(model_dir, paths, images, tolerance, quantised=frozenset({"onnx_int8"}), reference=eager)
    if gate_check is not None:
        report["domain_gate"] = gate_check
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
