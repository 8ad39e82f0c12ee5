"""Stages of the TorchServe handler, as small functions that tests call without a server.


* ``extract_image_bytes``  request dict -> image bytes (raw body, multipart ``data``, base64 JSON)
* ``preprocess``           requests -> one uint8 batch (N,3,32,32) + per-request errors
* ``Backend.__call__``     batch -> logits (one host->device copy; the upsample runs on the device)
* ``postprocess``          logits -> calibrated JSON per request (REAL, FAKE or UNCERTAIN), errors left in their slots
* ``add_spectral_opinion`` the frequency score beside the CNN's answer (never replacing it)
* ``add_explanations``     Grad-CAM for the requests sent to /explanations (eager model, same input)
* ``batch_metrics``        the batch's own metrics (size, stage times, labels, input errors)

A bad input fails only its own request (4xx JSON); the rest of the dynamic batch is answered.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from detector.answer import answer
from detector.metadata import ModelMetadata
from detector.gradcam import explanation, grad_cam
from detector.model import AlignedClassifier, calibrated_probabilities, load_model, predict_logits
from detector.preprocessing import DecodeLimits, InvalidImageError, load_aligned
from detector.spectral import SpectralScore

logger = logging.getLogger(__name__)

JSON_IMAGE_KEYS = ("image", "data", "b64")
REASON_PHRASES = {400: "Bad Request", 413: "Payload Too Large", 415: "Unsupported Media Type"}
THREADS_ENV = "AI_DETECTOR_INTRA_OP_THREADS"


@dataclass
class PreparedBatch:
    """Decoded images of the valid requests and the errors of the others, by request position."""

    images: np.ndarray
    positions: list[int]
    errors: dict[int, InvalidImageError] = field(default_factory=dict)


def _decode_base64_json(payload: Any) -> bytes:
    if not isinstance(payload, dict):
        raise InvalidImageError(f"JSON body must be an object with one of the keys {list(JSON_IMAGE_KEYS)}", kind="BadJson")
    encoded = next((payload[k] for k in JSON_IMAGE_KEYS if k in payload), None)
    if not isinstance(encoded, str):
        raise InvalidImageError(f"JSON body needs a base64 string under one of {list(JSON_IMAGE_KEYS)}", kind="BadJson")
    if encoded.startswith("data:") and "," in encoded:  # data URL
        encoded = encoded.split(",", 1)[1]
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImageError(f"invalid base64: {exc}", kind="BadBase64") from exc


def extract_image_bytes(request: dict[str, Any]) -> bytes:
    """Image bytes from a raw body, a multipart field ``data``, a base64 JSON body or a KServe instance."""
    payload = request.get("data", request.get("body"))
    if payload is None:
        raise InvalidImageError(
            "no image found: send raw bytes, a multipart field named 'data', or JSON {\"image\": \"<base64>\"}",
            kind="MissingInput",
        )
    if isinstance(payload, (bytes, bytearray)):
        if payload[:1] == b"{":  # JSON that TorchServe did not decode (wrong content type or decoding off)
            try:
                return _decode_base64_json(json.loads(payload))
            except (UnicodeDecodeError, json.JSONDecodeError):
                pass  # not JSON after all: let the image decoder judge the bytes
        return bytes(payload)
    if isinstance(payload, str):  # a KServe v1 instance {"data": "<base64>"}, or a text body
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidImageError("text body: send the image bytes, or JSON with base64", status=415,
                                    kind="UnsupportedFormat") from None
    return _decode_base64_json(payload)


def preprocess(requests: list[dict[str, Any]], metadata: ModelMetadata, limits: DecodeLimits) -> PreparedBatch:
    """Decode and align every request; failures are recorded, never raised."""
    images, positions, errors = [], [], {}
    for position, request in enumerate(requests):
        try:
            data = extract_image_bytes(request)
            images.append(load_aligned(data, metadata.input_size, metadata.downsample_filter, limits).transpose(2, 0, 1))
            positions.append(position)
        except InvalidImageError as exc:
            errors[position] = exc
    size = metadata.input_size
    batch = np.stack(images) if images else np.empty((0, 3, size, size), dtype=np.uint8)
    return PreparedBatch(images=np.ascontiguousarray(batch), positions=positions, errors=errors)


def error_body(error: InvalidImageError) -> dict[str, Any]:
    return {"code": error.status, "type": error.kind, "message": str(error)}


def add_spectral_opinion(responses: list[dict[str, Any]], prepared: PreparedBatch, score: SpectralScore) -> None:
    """Attach the frequency score's P(FAKE) and its measured test accuracy beside the CNN's answer.
    It is a second opinion only: the label stays the CNN's."""
    if not prepared.positions:
        return
    p_fake = score.p_fake(prepared.images.transpose(0, 2, 3, 1))
    for row, position in enumerate(prepared.positions):
        responses[position]["spectral"] = {"p_fake": float(p_fake[row]),
                                           "test_accuracy": score.metrics.get("test_accuracy")}


def postprocess(logits: np.ndarray, prepared: PreparedBatch, metadata: ModelMetadata, backend_name: str,
                model_version: str, min_confidence: float) -> list[dict[str, Any]]:
    """One JSON-serialisable response per request, in request order, naming the version that answered:
    REAL or FAKE, or UNCERTAIN (with the reason) below ``min_confidence``; both probabilities always."""
    probabilities = calibrated_probabilities(torch.from_numpy(np.asarray(logits)), metadata.temperature).numpy()
    slots: dict[int, dict[str, Any]] = {pos: error_body(err) for pos, err in prepared.errors.items()}
    for row, position in enumerate(prepared.positions):
        given = answer(probabilities[row], metadata.class_names, min_confidence)
        slots[position] = {
            "label": given["label"],
            "probabilities": {name: float(probabilities[row, i]) for i, name in enumerate(metadata.class_names)},
            "model_version": model_version,
            "backend": backend_name,
            **({"abstained": given["abstained"]} if "abstained" in given else {}),
        }
    return [slots[i] for i in range(len(slots))]


def add_explanations(responses: list[dict[str, Any]], prepared: PreparedBatch, logits: np.ndarray,
                     model: AlignedClassifier, wanted: set[int]) -> None:
    """Attach a Grad-CAM map of the predicted class to the answers of the positions in ``wanted``.

    The map is computed on the served weights (the eager model built from the archive's
    safetensors, since the TorchScript/ONNX graphs expose no intermediate layers) and the very
    uint8 input the backend classified; the label it explains is the backend's.
    """
    rows = [row for row, position in enumerate(prepared.positions) if position in wanted]
    if not rows:
        return
    device = next(model.parameters()).device
    images = torch.from_numpy(prepared.images[rows]).to(device)
    cams = grad_cam(model, images, np.asarray(logits)[rows].argmax(axis=1).tolist())
    for row, cam in zip(rows, cams):
        responses[prepared.positions[row]]["gradcam"] = explanation(prepared.images[row].transpose(1, 2, 0), cam,
                                                                    model.architecture)


@dataclass(frozen=True)
class MetricSample:
    """One value for TorchServe's metrics (Prometheus on the metrics port); ModelName/Level are added by TorchServe."""

    name: str
    value: float
    unit: str
    kind: str                                      # "counter" or "histogram"
    dimensions: tuple[tuple[str, str], ...] = ()


def batch_metrics(prepared: PreparedBatch, responses: list[dict[str, Any]], preprocess_ms: float,
                  inference_ms: float) -> list[MetricSample]:
    """What operators watch per batch: its size, stage times, answers per label, input errors per type."""
    samples = [MetricSample("BatchSize", len(responses), "count", "histogram"),
               MetricSample("PreprocessMs", preprocess_ms, "ms", "histogram")]
    if prepared.positions:  # no inference ran for a batch of only bad requests
        samples.append(MetricSample("InferenceMs", inference_ms, "ms", "histogram"))
    labels = Counter(r["label"] for r in responses if "label" in r)
    samples += [MetricSample("Predictions", n, "count", "counter", (("Label", label),)) for label, n in sorted(labels.items())]
    errors = Counter(error.kind for error in prepared.errors.values())
    samples += [MetricSample("InputErrors", n, "count", "counter", (("ErrorType", kind),)) for kind, n in sorted(errors.items())]
    return samples


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
    """ONNX Runtime session: CUDA provider when a GPU is assigned, CPU provider otherwise."""

    name = "onnx"

    def __init__(self, path: Path, device: torch.device, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        providers: list[Any] = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        logger.info("ONNX Runtime providers: %s", self.session.get_providers())

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


class EagerFallbackBackend:
    """The archive's own fp32 weights in eager PyTorch: what a worker serves when its artifact failed the
    load-time self-check on this CPU (slower, never wrong); the name tells every caller so."""

    name = "eager_fp32_fallback"

    def __init__(self, model_dir: Path, device: torch.device) -> None:
        self.model = load_model(model_dir, device)[0]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return predict_logits(self.model, torch.from_numpy(batch), batch_size=max(len(batch), 1)).numpy()


def select_device(gpu_id: int | None) -> torch.device:
    """The GPU TorchServe assigned to this worker, if any and usable; else the CPU."""
    if gpu_id is not None and torch.cuda.is_available():
        return torch.device("cuda", int(gpu_id))
    return torch.device("cpu")


def backend_logits(backend: Backend, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Logits for many aligned images, ``batch_size`` at a time (offline checks of a served artifact)."""
    return np.concatenate([backend(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def load_backend(artifact: Path, device: torch.device, threads: int) -> Backend:
    """Pick the runtime from the serialized file's suffix (the archive decides)."""
    if artifact.suffix == ".onnx":
        return OnnxBackend(artifact, device, threads)
    if artifact.suffix in (".pt", ".ts"):
        return TorchScriptBackend(artifact, device)
    raise ValueError(f"unsupported artifact {artifact.name}: expected .pt (TorchScript) or .onnx")


@dataclass(frozen=True)
class HandlerSettings:
    """Handler options from the archive's model-config.yaml ``handler`` section."""

    limits: DecodeLimits
    threads: int
    min_confidence: float | None = None   # None: the model's own (metadata.json); 0: never UNCERTAIN

    def abstain_below(self, metadata: ModelMetadata) -> float:
        """The confidence below which this model answers UNCERTAIN."""
        return metadata.min_confidence if self.min_confidence is None else self.min_confidence

    @classmethod
    def from_yaml(cls, section: dict[str, Any] | None, environ: dict[str, str] | None = None) -> "HandlerSettings":
        """``$AI_DETECTOR_INTRA_OP_THREADS`` (set where TorchServe starts) overrides the archive's
        ``intra_op_threads``, so operators size workers x threads to the cores without rebuilding."""
        section = dict(section or {})
        environ = os.environ if environ is None else environ
        archive_threads = int(section.pop("intra_op_threads", 0))
        threads = int(environ.get(THREADS_ENV) or archive_threads) or (os.cpu_count() or 1)
        min_confidence = parse_min_confidence(section.pop("min_confidence", "model"))
        known = {"max_image_bytes": "max_bytes", "max_image_pixels": "max_pixels", "max_image_side": "max_side"}
        unknown = set(section) - set(known)
        if unknown:
            raise ValueError(f"unknown handler settings: {sorted(unknown)}")
        return cls(limits=DecodeLimits(**{known[k]: int(v) for k, v in section.items()}), threads=threads,
                   min_confidence=min_confidence)


def parse_min_confidence(value: Any) -> float | None:
    """``model`` (the threshold fitted with the weights), ``off`` (always REAL or FAKE; YAML may read it as
    false) or a confidence in [0.5, 1)."""
    if value == "model":
        return None
    if value in ("off", False):
        return 0.0
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0.5 <= value < 1.0:
        return float(value)
    raise ValueError(f"handler min_confidence must be 'model', 'off' or a number in [0.5, 1), not {value!r}")
