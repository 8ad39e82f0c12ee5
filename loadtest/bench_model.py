"""Bare-model benchmark: the served artifacts through the handler's own pipeline (decode -> align ->
batch -> backend -> calibrated JSON -> spectral opinion -> metrics) without HTTP or TorchServe, per
batch size. This is the ceiling the server is measured against: the same work, minus TorchServe.

    python -m loadtest.bench_model --artifacts build/artifacts --out loadtest/results/bare_model

Threads as the handler sets them (handlers/model-config.yaml). Writes bare_model.json/.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import yaml

from detector.backends import FALLBACK_NAME, select_device
from detector.hardware import cpu_info, cpu_line
from detector.paths import REPO
from detector.pipeline import DetectorPipeline, HandlerSettings
from export.variants import FORMATS
from loadtest.images import load_images

ARTIFACTS = FORMATS   # backend name -> artifact file (bf16: python -m export.variants)


def measure(artifacts: Path, backend_name: str, batch_sizes: list[int], images: list[bytes],
            seconds_per_size: float, gpu_id: int | None = None) -> list[dict[str, float]]:
    """img/s and per-batch latency (median, p95) for each batch size, through the very pipeline a worker
    runs (``detector.pipeline``, self-check included), and the backend's share of it (the model alone,
    host->device copy included when ``gpu_id`` names a GPU)."""
    settings = HandlerSettings.from_yaml(yaml.safe_load((REPO / "handlers" / "model-config.yaml").read_text())["handler"])
    pipeline = DetectorPipeline.load(artifacts, ARTIFACTS[backend_name], settings, gpu_id)
    if pipeline.backend.name == FALLBACK_NAME:   # a worker would serve fp32 instead: so is the figure
        print(f"[bench] {backend_name} failed its self-check on this CPU: measuring {FALLBACK_NAME}", flush=True)
    rows = []
    for size in batch_sizes:
        requests = [{"body": images[i % len(images)]} for i in range(size)]
        pipeline.run(requests)  # warm-up
        latencies, backend_latencies, started = [], [], time.perf_counter()
        while time.perf_counter() - started < seconds_per_size or len(latencies) < 5:
            begin = time.perf_counter()
            backend_latencies.append(pipeline.run(requests).backend_ms)
            latencies.append((time.perf_counter() - begin) * 1000)
        latencies.sort()
        rows.append({"batch_size": size, "images_per_second": round(1000 * size * len(latencies) / sum(latencies), 1),
                     "batch_ms_p50": round(statistics.median(latencies), 2),
                     "batch_ms_p95": round(latencies[int(0.95 * (len(latencies) - 1))], 2), "batches": len(latencies),
                     "backend_ms_p50": round(statistics.median(backend_latencies), 2)})
        print(f"[bench] {backend_name} batch {size}: {rows[-1]}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=REPO / "build" / "artifacts")
    parser.add_argument("--batch-sizes", default="1,2,4,8,16,32")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per batch size")
    parser.add_argument("--out", type=Path, default=REPO / "loadtest" / "results" / "bare_model")
    parser.add_argument("--backends", default=",".join(ARTIFACTS), help="those whose artifact exists are measured")
    parser.add_argument("--gpu", type=int, default=None,
                        help="GPU id, as TorchServe assigns one to a worker (ONNX models run on it only where "
                             "onnxruntime has the CUDA provider; otherwise on the CPU: measure --backends torchscript)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    images = load_images(256)
    report = {name: measure(args.artifacts, name, sizes, images, args.seconds, args.gpu)
              for name in args.backends.split(",") if (args.artifacts / ARTIFACTS[name]).exists()}
    args.out.mkdir(parents=True, exist_ok=True)
    cpu = cpu_info()
    (args.out / "bare_model.json").write_text(json.dumps({"cpu": cpu, **report}, indent=2) + "\n")
    device = select_device(args.gpu)
    lines = [f"CPU: {cpu_line(cpu)}" + (f"; GPU: {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""), "",
             "| backend | batch size | images/s | batch latency p50 (ms) | p95 (ms) | backend alone p50 (ms) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {r['batch_size']} | {r['images_per_second']:.1f} | {r['batch_ms_p50']:.1f} | {r['batch_ms_p95']:.1f} "
              f"| {r['backend_ms_p50']:.1f} |" for name, rows in report.items() for r in rows]
    (args.out / "bare_model.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
