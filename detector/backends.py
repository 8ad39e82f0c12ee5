"""The runtimes that turn a uint8 batch (N,3,32,32) into logits: TorchScript, ONNX Runtime (fp32 or int8),
and the eager fp32 weights. The archive's serialized file picks one (``load_backend``); every worker checks it
against the export's reference answers before serving (``self_checked``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from detector.hardware import cpu_line
from detector.metadata import ModelMetadata
from detector.model import AlignedClassifier, load_model, predict_logits
from detector.selfcheck import SelfCheck

logger = logging.getLogger(__name__)

FALLBACK_NAME = "eager_fp32_fallback"


class Backend(Protocol):
    name: str

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class TorchScriptBackend:
    """TorchScript module on CPU or one GPU. On a GPU: one host->device copy of the 32×32 batch, the
    32->224 upsample on the device (inside the module) and fp16 autocast for the convolutions."""

    name = "torchscript"

    def __init__(self, path: Path, device: torch.device) -> None:
        self.device = device
        self.module = torch.jit.load(str(path), map_location=device).eval()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(batch)
        on_gpu = self.device.type == "cuda"
        if on_gpu:
            tensor = tensor.pin_memory()
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=on_gpu):
            return self.module(tensor.to(self.device, non_blocking=True)).float().cpu().numpy()


class OnnxBackend:
    """ONNX Runtime session: CUDA provider when a GPU is assigned, CPU provider otherwise.

    Its threads sleep as soon as a run ends (no spinning): a worker runs decoding, the detector, the domain
    gate and the spectral score one after another on the same cores, and threads that spin for work after a
    run take those cores from the next stage (BENCHMARKS.md, "The domain gate's share": it about halved the
    gate's share beside the ONNX detectors, at no measurable cost to the detector alone)."""

    name = "onnx"

    def __init__(self, path: Path, device: torch.device, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers: list[Any] = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        logger.info("ONNX Runtime providers: %s", self.session.get_providers())

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


class EagerBackend:
    """The fp32 weights in eager PyTorch. Offline reports run the serving pipeline on it (no export needed),
    and a worker serves it under the name ``eager_fp32_fallback`` when its artifact failed the load-time
    self-check on this CPU (slower, never wrong): the name tells every caller so."""

    def __init__(self, model: AlignedClassifier, name: str = "eager_fp32") -> None:
        self.model = model
        self.name = name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return predict_logits(self.model, torch.from_numpy(batch), batch_size=max(len(batch), 1)).numpy()


def select_device(gpu_id: int | None) -> torch.device:
    """The GPU TorchServe assigned to this worker, if any and usable; else the CPU."""
    if gpu_id is not None and torch.cuda.is_available():
        return torch.device("cuda", int(gpu_id))
    return torch.device("cpu")


def batched_outputs(backend: Backend, images: np.ndarray, batch_size: int) -> np.ndarray:
    """A backend's outputs (logits, or a domain extractor's features) for many aligned images, ``batch_size``
    at a time: offline checks of a served artifact."""
    return np.concatenate([backend(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def load_backend(artifact: Path, device: torch.device, threads: int) -> Backend:
    """Pick the runtime from the serialized file's suffix (the archive decides)."""
    if artifact.suffix == ".onnx":
        return OnnxBackend(artifact, device, threads)
    if artifact.suffix in (".pt", ".ts"):
        return TorchScriptBackend(artifact, device)
    raise ValueError(f"unsupported artifact {artifact.name}: expected .pt (TorchScript) or .onnx")


def self_checked(backend: Backend, model_dir: Path, metadata: ModelMetadata, device: torch.device) -> Backend:
    """``backend`` if it reproduces the export's reference answers on this machine, else the eager fp32
    weights: an int8 artifact must never serve answers worse than fp32 because of the CPU it landed on."""
    passed, agreement = SelfCheck.load(model_dir).verify(backend, metadata.temperature)
    figures = ", ".join(f"{key} {value:.4g}" for key, value in agreement.items())
    if passed:
        logger.info("self-check passed: %s against eager fp32 (%s) on %s", backend.name, figures, cpu_line())
        return backend
    logger.error("self-check FAILED: %s disagrees with eager fp32 (%s) on %s; serving the archive's fp32 weights "
                 "instead (backend %s)", backend.name, figures, cpu_line(), FALLBACK_NAME)
    return EagerBackend(load_model(model_dir, device)[0], FALLBACK_NAME)
