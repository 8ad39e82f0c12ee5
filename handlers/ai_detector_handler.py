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
from detector.oip import model_metadata, output_specs
from detector.pipeline import DetectorPipeline
from handlers.batch_plan import one_request_per_item, plan_batch
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
        metadata = ModelMetadata.load(model_dir)
        settings = HandlerSettings.from_yaml(yaml_config.get("handler"), metadata)
        self.pipeline = DetectorPipeline.load(model_dir, model["serializedFile"], settings.point, settings.limits,
                                              settings.threads, properties.get("gpu_id"),
                                              str(version) if version else None)
        self.model_name = model.get("modelName", "")
        self.max_request_images = settings.max_request_images
        self.outputs = output_specs(metadata.class_names, settings.point.domain_threshold is not None)
        self.initialized = True

    def handle(self, requests: list[dict[str, Any]], context: Any) -> list[dict[str, Any]]:
        if context.get_request_header(0, "describe") == "True":   # GET /models/{name}?customized=true
            return [model_metadata(self.model_name, self.pipeline.model_version, self.outputs)]
        per_item = one_request_per_item(requests, context)
        plan = plan_batch(requests, context, per_item, self.max_request_images)
        result = self.pipeline.run(plan.items, explain=plan.explain)
        responses, statuses = plan.answers(result.responses, self.model_name, self.pipeline.model_version, self.outputs)
        if per_item:
            for position in range(len(requests)):  # answers and errors alike are JSON
                context.set_response_content_type(position, "application/json")
            for position, status in statuses.items():
                context.set_response_status(status, REASON_PHRASES.get(status, "Bad Request"), idx=position)
        emit_metrics(context, batch_metrics(result))
        return responses
