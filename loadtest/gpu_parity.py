"""The GPU serving path against the CPU's fp32: same TorchScript artifact, same aligned test images.

    python -m loadtest.gpu_parity --artifacts build/artifacts --images 2000    # on a machine with a GPU

On a GPU the handler runs the network under fp16 autocast (detector/backends.py). This prints how far its
calibrated probabilities move from the CPU's fp32 ones, how often the label changes, both accuracies,
and the network's own throughput at batch 256 with and without autocast. Writes gpu_parity.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from detector.backends import Backend, TorchScriptBackend, batched_outputs
from detector.metadata import ModelMetadata
from detector.model import calibrated_probabilities
from detector.paths import REPO
from detector.selfcheck import probability_agreement
from export.export import TORCHSCRIPT_NAME, parity_images


def probabilities(backend: Backend, images: np.ndarray, temperature: float, batch_size: int = 256) -> np.ndarray:
    """Calibrated probabilities, batch by batch, as the handler computes them."""
    return calibrated_probabilities(torch.from_numpy(batched_outputs(backend, images, batch_size)), temperature).numpy()


def compare(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Largest probability change, label agreement and both accuracies."""
    return {**probability_agreement(reference, candidate),
            "reference_accuracy": float((reference.argmax(1) == labels).mean()),
            "candidate_accuracy": float((candidate.argmax(1) == labels).mean())}


def module_images_per_second(module: torch.jit.ScriptModule, batch: torch.Tensor, fp16: bool, repeats: int = 50) -> float:
    """The network alone on a batch already on the GPU (no decode, no copies)."""
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=fp16):
        for _ in range(5):
            module(batch)
        torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(repeats):
            module(batch)
        torch.cuda.synchronize()
    return len(batch) * repeats / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=REPO / "build" / "artifacts")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cifake")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=REPO / "loadtest" / "results" / "gpu")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("[gpu-parity] no GPU here: run it on a machine with one")
    metadata = ModelMetadata.load(args.artifacts)
    images, labels = parity_images(args.data, args.images, metadata.input_size, metadata.downsample_filter)
    gpu = TorchScriptBackend(args.artifacts / TORCHSCRIPT_NAME, torch.device("cuda", 0))
    cpu = TorchScriptBackend(args.artifacts / TORCHSCRIPT_NAME, torch.device("cpu"))
    report = {"device": torch.cuda.get_device_name(0), "images": len(images), "model_version": metadata.version,
              **compare(probabilities(cpu, images, metadata.temperature), probabilities(gpu, images, metadata.temperature),
                        labels)}
    batch = torch.from_numpy(images[:256]).cuda()
    report.update({f"network_img_per_s_batch_256_{name}": round(module_images_per_second(gpu.module, batch, fp16))
                   for name, fp16 in (("fp32", False), ("fp16_autocast", True))})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_parity.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
