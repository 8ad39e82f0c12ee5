"""TorchServe entry point for the AI-generated-image detector (TorchScript or ONNX, chosen by the archive).

TorchServe requires exactly one class in this module. It adapts TorchServe to ``detector.pipeline``:
the archive's settings in, the pipeline's answers, HTTP statuses and metrics out. Everything that
happens to a request lives in the pipeline, which the benchmark and the offline reports run too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from detector.metadata import ModelMetadata
from detector.pipeline import DetectorPipeline
from handlers.metrics import batch_metrics, emit_metrics
from handlers.settings import HandlerSettings

logger = logging.getLogger(__name__)

REASON_PHRASES = {400: "Bad Request", 413: "Payload Too Large", 415: "Unsupported Media Type"}


class AIDetectorHandler:
    """TorchServe entry point: one pipeline per worker; answers every request of a batch."""

    def __init__(self) -> None:
        self.initialized = False

    def initialize(self, context: Any) -> None:
        properties = context.system_properties
        yaml_config = getattr(context, "model_yaml_config", None) or {}
        model = context.manifest["model"]
        # the archive's version is the one operators route to (TorchServe model versions)
        version = model.get("modelVersion")
        model_dir = Path(properties["model_dir"])
        settings = HandlerSettings.from_yaml(yaml_config.get("handler"), ModelMetadata.load(model_dir))
        self.pipeline = DetectorPipeline.load(model_dir, model["serializedFile"], settings.point, settings.limits,
                                              settings.threads, properties.get("gpu_id"),
                                              str(version) if version else None)
        self.initialized = True

    def handle(self, requests: list[dict[str, Any]], context: Any) -> list[dict[str, Any]]:
        result = self.pipeline.run(requests, explain=explanation_positions(requests, context))
        if one_request_per_item(requests, context):
            for position in range(len(requests)):  # answers and errors alike are JSON
                context.set_response_content_type(position, "application/json")
            for position, error in result.errors.items():
                context.set_response_status(error.status, REASON_PHRASES.get(error.status, "Bad Request"), idx=position)
        emit_metrics(context, batch_metrics(result))
        return result.responses


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
