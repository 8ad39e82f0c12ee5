"""Generate the Grafana dashboard for ai_detector from one list of panels.

    python -m monitoring.dashboard     # rewrites monitoring/grafana/dashboards/ai_detector.json

Every query reads metrics that TorchServe exposes on its metrics port (Prometheus mode): its own
request counters and latencies, and the handler's (detector/pipeline.py ``batch_metrics``).
A test scrapes a real server and checks that each metric named here exists.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

OUTPUT = Path(__file__).resolve().parent / "grafana" / "dashboards" / "ai_detector.json"

# (title, unit, [(legend, PromQL)]) — one time-series panel each, two per row
PANELS: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("Requests per second (by model)", "reqps",
     [("{{model_name}}", "sum by (model_name) (rate(ts_inference_requests_total[1m]))")]),
    ("HTTP answers per second", "reqps",
     [("2xx", "sum(rate(Requests2XX[1m]))"), ("4xx", "sum(rate(Requests4XX[1m]))"),
      ("5xx", "sum(rate(Requests5XX[1m]))")]),
    ("Mean latency per request (ms)", "ms",
     [("inference {{model_name}}", "sum by (model_name) (rate(ts_inference_latency_microseconds[1m])) / "
                                   "sum by (model_name) (rate(ts_inference_requests_total[1m])) / 1000"),
      ("queue {{model_name}}", "sum by (model_name) (rate(ts_queue_latency_microseconds[1m])) / "
                               "sum by (model_name) (rate(ts_inference_requests_total[1m])) / 1000")]),
    ("Batch size (requests per batch)", "short",
     [("mean {{ModelName}}", "sum by (ModelName) (rate(BatchSize_sum[5m])) / sum by (ModelName) (rate(BatchSize_count[5m]))"),
      ("p95 {{ModelName}}", "histogram_quantile(0.95, sum by (ModelName, le) (rate(BatchSize_bucket[5m])))")]),
    ("Handler stage time per batch, p50 / p95 (ms)", "ms",
     [("preprocess p50 {{ModelName}}", "histogram_quantile(0.5, sum by (ModelName, le) (rate(PreprocessMs_bucket[5m])))"),
      ("preprocess p95 {{ModelName}}", "histogram_quantile(0.95, sum by (ModelName, le) (rate(PreprocessMs_bucket[5m])))"),
      ("inference p50 {{ModelName}}", "histogram_quantile(0.5, sum by (ModelName, le) (rate(InferenceMs_bucket[5m])))"),
      ("inference p95 {{ModelName}}", "histogram_quantile(0.95, sum by (ModelName, le) (rate(InferenceMs_bucket[5m])))")]),
    ("Predictions per second by label", "reqps",
     [("{{Label}} {{ModelName}}", "sum by (ModelName, Label) (rate(Predictions[5m]))")]),
    ("Rejected inputs per second by type", "reqps",
     [("{{ErrorType}}", "sum by (ErrorType) (rate(InputErrors[5m]))")]),
    ("Host CPU and memory", "percent",
     [("CPU", "max(CPUUtilization)"), ("memory", "max(MemoryUtilization)")]),
]


def metric_names() -> set[str]:
    """Every metric the dashboard queries (for the test against a real scrape)."""
    exprs = [expr for _, _, targets in PANELS for _, expr in targets]
    ranged = {name for expr in exprs for name in re.findall(r"(\w+)\[\d+m\]", expr)}  # rate(NAME[1m])
    gauges = {name for expr in exprs for name in re.findall(r"max\((\w+)\)", expr)}  # max(NAME)
    return ranged | gauges


def dashboard() -> dict:
    panels = []
    for index, (title, unit, targets) in enumerate(PANELS):
        panels.append({
            "id": index + 1, "type": "timeseries", "title": title,
            "datasource": {"type": "prometheus", "uid": "prometheus"},
            "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
                         "datasource": {"type": "prometheus", "uid": "prometheus"}}
                        for i, (legend, expr) in enumerate(targets)],
        })
    return {"uid": "ai-detector", "title": "ai_detector (TorchServe)", "tags": ["ai_detector", "torchserve"],
            "timezone": "browser", "schemaVersion": 39, "version": 1, "refresh": "30s",
            "time": {"from": "now-1h", "to": "now"}, "panels": panels}


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}")
