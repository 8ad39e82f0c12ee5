"""TorchServe entry point for the AI-generated-image detector (TorchScript or ONNX, chosen by the archive).

TorchServe requires exactly one class in this module; the stages it wires together
live in ``handlers.stages`` so that unit tests can call them without a server.
A bad input fails only its own request (4xx JSON); the rest of the dynamic batch is answered.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detector.hardware import cpu_line
from detector.metadata import ModelMetadata
from detector.model import AlignedClassifier, load_model
from detector.spectral import SPECTRAL_FILENAME, SpectralScore
from handlers.selfcheck import SelfCheck
from handlers.stages import (
    REASON_PHRASES,
    Backend,
    EagerFallbackBackend,
    HandlerSettings,
    MetricSample,
    PreparedBatch,
    add_explanations,
    add_spectral_opinion,
    batch_metrics,
    load_backend,
    postprocess,
    preprocess,
    select_device,
)

logger = logging.getLogger(__name__)


class AIDetectorHandler:
    """TorchServe entry point: wires the stages together and answers every request of a batch."""

    def __init__(self) -> None:
        self.initialized = False

    def initialize(self, context: Any) -> None:
        properties = context.system_properties
        model_dir = Path(properties["model_dir"])
        yaml_config = getattr(context, "model_yaml_config", None) or {}
        self.settings = HandlerSettings.from_yaml(yaml_config.get("handler"))
        torch.set_num_threads(self.settings.threads)
        self.metadata = ModelMetadata.load(model_dir)
        self.min_confidence = self.settings.abstain_below(self.metadata)
        self.model_dir = model_dir
        self._explainer: AlignedClassifier | None = None
        has_spectral = (model_dir / SPECTRAL_FILENAME).exists()   # optional: archives of models fitted without one
        self.spectral = SpectralScore.load(model_dir) if has_spectral else None
        self.device = select_device(properties.get("gpu_id"))
        artifact = model_dir / context.manifest["model"]["serializedFile"]
        self.backend = self_checked(load_backend(artifact, self.device, self.settings.threads), model_dir,
                                    self.metadata, self.device)
        # the archive's version is the one operators route to (TorchServe model versions)
        self.model_version = str(context.manifest["model"].get("modelVersion", self.metadata.version))
        self.initialized = True
        logger.info("ai_detector %s (weights %s): %s on %s, %d threads, UNCERTAIN below confidence %.4f",
                    self.model_version, self.metadata.version, self.backend.name, self.device, self.settings.threads,
                    self.min_confidence)

    def preprocess(self, requests: list[dict[str, Any]]) -> PreparedBatch:
        return preprocess(requests, self.metadata, self.settings.limits)

    def inference(self, prepared: PreparedBatch) -> np.ndarray:
        if not prepared.positions:
            return np.empty((0, len(self.metadata.class_names)), dtype=np.float32)
        return self.backend(prepared.images)

    def postprocess(self, logits: np.ndarray, prepared: PreparedBatch) -> list[dict[str, Any]]:
        return postprocess(logits, prepared, self.metadata, self.backend.name, self.model_version, self.min_confidence)

    def explainer(self) -> AlignedClassifier:
        """The eager model for Grad-CAM, built from the archive's weights on the first explanation."""
        if self._explainer is None:
            self._explainer = load_model(self.model_dir, self.device)[0].requires_grad_(False)
        return self._explainer

    def handle(self, requests: list[dict[str, Any]], context: Any) -> list[dict[str, Any]]:
        started = time.perf_counter()
        prepared = self.preprocess(requests)
        decoded = time.perf_counter()
        logits = self.inference(prepared)
        inferred = time.perf_counter()
        responses = self.postprocess(logits, prepared)
        if self.spectral is not None:
            add_spectral_opinion(responses, prepared, self.spectral)
        wanted = explanation_positions(requests, context)
        if wanted:
            add_explanations(responses, prepared, logits, self.explainer(), wanted)
        if one_request_per_item(requests, context):
            for position in range(len(requests)):  # answers and errors alike are JSON
                context.set_response_content_type(position, "application/json")
            for position, error in prepared.errors.items():
                context.set_response_status(error.status, REASON_PHRASES.get(error.status, "Bad Request"), idx=position)
        emit_metrics(context, batch_metrics(prepared, responses, (decoded - started) * 1000, (inferred - decoded) * 1000))
        return responses


def self_checked(backend: Backend, model_dir: Path, metadata: ModelMetadata, device: torch.device) -> Backend:
    """``backend`` if it reproduces the export's reference answers on this machine, else the eager fp32
    weights: an int8 artifact must never serve answers worse than fp32 because of the CPU it landed on."""
    passed, agreement = SelfCheck.load(model_dir).verify(backend, metadata.temperature)
    figures = ", ".join(f"{key} {value:.4g}" for key, value in agreement.items())
    if passed:
        logger.info("self-check passed: %s against eager fp32 (%s) on %s", backend.name, figures, cpu_line())
        return backend
    logger.error("self-check FAILED: %s disagrees with eager fp32 (%s) on %s; serving the archive's fp32 weights "
                 "instead (backend %s)", backend.name, figures, cpu_line(), EagerFallbackBackend.name)
    return EagerFallbackBackend(model_dir, device)


def one_request_per_item(items: list[Any], context: Any) -> bool:
    """False under a request envelope (KServe's {"instances": [...]}), where one HTTP request carries
    several items: their errors stay in the response body, since an HTTP status belongs to the request."""
    return context.request_ids is None or len(context.request_ids) == len(items)


def explanation_positions(items: list[Any], context: Any) -> set[int]:
    """Positions sent to /explanations (TorchServe marks such requests with the header explain=True);
    under an envelope the one HTTP request's header covers all its items."""
    if one_request_per_item(items, context):
        return {i for i in range(len(items)) if context.get_request_header(i, "explain") == "True"}
    return set(range(len(items))) if context.get_request_header(0, "explain") == "True" else set()


def emit_metrics(context: Any, samples: list[MetricSample]) -> None:
    """Hand the batch's metrics to TorchServe (config.properties turns on model_metrics_auto_detect)."""
    from ts.metrics.dimension import Dimension
    from ts.metrics.metric_type_enum import MetricTypes

    for sample in samples:
        context.metrics.add_metric(sample.name, sample.value, sample.unit,
                                   dimensions=[Dimension(name, value) for name, value in sample.dimensions],
                                   metric_type=MetricTypes(sample.kind))
