"""What operators watch per batch, as TorchServe metrics (Prometheus on the metrics port; config.properties
turns on model_metrics_auto_detect)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from detector.pipeline import PipelineResult


@dataclass(frozen=True)
class MetricSample:
    """One value for TorchServe's metrics; ModelName/Level are added by TorchServe."""

    name: str
    value: float
    unit: str
    kind: str                                      # "counter" or "histogram"
    dimensions: tuple[tuple[str, str], ...] = ()


def batch_metrics(result: PipelineResult) -> list[MetricSample]:
    """The batch's size, stage times (the domain gate's and the JPEG recheck's where they ran), answers per
    label, abstentions per reason, input errors per type."""
    responses = result.responses
    samples = [MetricSample("BatchSize", len(responses), "count", "histogram"),
               MetricSample("PreprocessMs", result.decode_ms, "ms", "histogram")]
    if result.images:  # no inference ran for a batch of only bad requests
        samples.append(MetricSample("InferenceMs", result.backend_ms, "ms", "histogram"))
        if result.domain_ms is not None:
            samples.append(MetricSample("DomainGateMs", result.domain_ms, "ms", "histogram"))
        if result.recheck_ms is not None:
            samples.append(MetricSample("RecheckMs", result.recheck_ms, "ms", "histogram"))
    labels = Counter(r["label"] for r in responses if "label" in r)
    samples += [MetricSample("Predictions", n, "count", "counter", (("Label", label),)) for label, n in sorted(labels.items())]
    reasons = Counter(r["abstained"]["reason"] for r in responses if "abstained" in r)
    samples += [MetricSample("Abstentions", n, "count", "counter", (("Reason", reason),))
                for reason, n in sorted(reasons.items())]
    errors = Counter(error.kind for error in result.errors.values())
    samples += [MetricSample("InputErrors", n, "count", "counter", (("ErrorType", kind),)) for kind, n in sorted(errors.items())]
    return samples


def emit_metrics(context: Any, samples: list[MetricSample]) -> None:
    """Hand the batch's metrics to TorchServe."""
    from ts.metrics.dimension import Dimension
    from ts.metrics.metric_type_enum import MetricTypes

    for sample in samples:
        context.metrics.add_metric(sample.name, sample.value, sample.unit,
                                   dimensions=[Dimension(name, value) for name, value in sample.dimensions],
                                   metric_type=MetricTypes(sample.kind))
