"""Bare-model benchmark: the served artifacts through the handler's own pipeline (decode -> align ->
batch -> backend -> calibrated JSON -> spectral opinion -> metrics) without HTTP or TorchServe, per
batch size. This is the ceiling the server is measured against: the same work, minus TorchServe.

    python -m loadtest.bench_model --artifacts build/artifacts --out loadtest/results/bare_model

Threads as the handler sets them (handlers/model-config.yaml). Writes bare_model.json/.md. ``--check-cost``
adds the share of throughput the domain gate and the JPEG recheck take: the same pipeline with each check on
and off, in alternating blocks of batches in one run so that a noisy machine slows both alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch
import yaml

from detector.backends import FALLBACK_NAME, select_device
from detector.hardware import cpu_info, cpu_line
from detector.paths import REPO
from detector.answer import OperatingPoint
from detector.metadata import ModelMetadata
from detector.pipeline import DetectorPipeline
from export.variants import FORMATS
from handlers.settings import HandlerSettings
from loadtest.images import load_images

ARTIFACTS = FORMATS   # backend name -> artifact file (bf16: python -m export.variants)
CHECK_BLOCK = 4       # counted batches per block in --check-cost


def archive_settings(artifacts: Path) -> HandlerSettings:
    """The handler settings every archive ships (handlers/model-config.yaml), for the model in ``artifacts``."""
    section = yaml.safe_load((REPO / "handlers" / "model-config.yaml").read_text())["handler"]
    return HandlerSettings.from_yaml(section, ModelMetadata.load(artifacts))


def served_pipeline(artifacts: Path, backend_name: str, gpu_id: int | None,
                    point: OperatingPoint | None = None) -> DetectorPipeline:
    """The pipeline a worker of that backend's archive builds (``point``: the archive's unless given)."""
    settings = archive_settings(artifacts)
    return DetectorPipeline.load(artifacts, ARTIFACTS[backend_name], point or settings.point, settings.limits,
                                 settings.threads, gpu_id)


def measure(artifacts: Path, backend_name: str, batch_sizes: list[int], images: list[bytes],
            seconds_per_size: float, gpu_id: int | None = None) -> list[dict[str, float]]:
    """img/s and per-batch latency (median, p95) for each batch size, through the very pipeline a worker
    runs (``detector.pipeline``, self-check, domain gate and JPEG recheck included), and the backend's, the gate's
    and the recheck's share of it (the model alone, host->device copy included when ``gpu_id`` names a GPU)."""
    pipeline = served_pipeline(artifacts, backend_name, gpu_id)
    if pipeline.backend.name == FALLBACK_NAME:   # a worker would serve fp32 instead: so is the figure
        print(f"[bench] {backend_name} failed its self-check on this CPU: measuring {FALLBACK_NAME}", flush=True)
    rows = []
    for size in batch_sizes:
        requests = [{"body": images[i % len(images)]} for i in range(size)]
        pipeline.run(requests)  # warm-up
        latencies, backend_latencies, gate_latencies, recheck_latencies = [], [], [], []
        started = time.perf_counter()
        while time.perf_counter() - started < seconds_per_size or len(latencies) < 5:
            begin = time.perf_counter()
            result = pipeline.run(requests)
            latencies.append((time.perf_counter() - begin) * 1000)
            backend_latencies.append(result.backend_ms)
            gate_latencies.append(result.domain_ms or 0.0)
            recheck_latencies.append(result.recheck_ms or 0.0)
        latencies.sort()
        rows.append({"batch_size": size, "images_per_second": round(1000 * size * len(latencies) / sum(latencies), 1),
                     "batch_ms_p50": round(statistics.median(latencies), 2),
                     "batch_ms_p95": round(latencies[int(0.95 * (len(latencies) - 1))], 2), "batches": len(latencies),
                     "backend_ms_p50": round(statistics.median(backend_latencies), 2),
                     "domain_gate_ms_p50": round(statistics.median(gate_latencies), 2),
                     "jpeg_recheck_ms_p50": round(statistics.median(recheck_latencies), 2)})
        print(f"[bench] {backend_name} batch {size}: {rows[-1]}", flush=True)
    return rows


CHECKS_OFF = {   # each check's cost: the archive's operating point against the same with that check off
    "domain gate": {"domain_threshold": None},
    "JPEG recheck": {"recheck": None},
    "both": {"domain_threshold": None, "recheck": None},
}


def check_cost(artifacts: Path, backend_name: str, batch_size: int, images: list[bytes], rounds: int,
               check: str, gpu_id: int | None = None, block: int = CHECK_BLOCK) -> dict[str, float]:
    """Throughput with the archive's settings (every check on) and with ``check`` off (``CHECKS_OFF``), in
    alternating blocks of ``block`` batches; the check's cost is the share of throughput it takes.

    Blocks, not single batches: work in one batch can slow the next (threads still spinning, caches
    refilled; numpy's OpenBLAS threads did so until the k-NN moved to torch), so batch-by-batch
    alternation charged part of the gate's cost to the gate-off batches. The first batch of each block
    absorbs that carry-over and is not counted."""
    on = served_pipeline(artifacts, backend_name, gpu_id)
    off = served_pipeline(artifacts, backend_name, gpu_id, dataclasses.replace(on.point, **CHECKS_OFF[check]))
    requests = [{"body": images[i % len(images)]} for i in range(batch_size)]
    seconds = {"on": 0.0, "off": 0.0}
    for _ in range(rounds):
        for name, pipeline in (("on", on), ("off", off)):
            pipeline.run(requests)   # carries the other pipeline's after-effects: not counted
            begin = time.perf_counter()
            for _ in range(block):
                pipeline.run(requests)
            seconds[name] += time.perf_counter() - begin
    with_check, without = (rounds * block * batch_size / seconds[name] for name in ("on", "off"))
    row = {"check": check, "batch_size": batch_size, "rounds": rounds, "block": block,
           "images_per_second_with": round(with_check, 1), "images_per_second_without": round(without, 1),
           "cost": round(1 - with_check / without, 4)}
    print(f"[bench] {backend_name} {check}: {row}", flush=True)
    return row


def available_backends(artifacts: Path, requested: str) -> list[str]:
    """The requested backends (comma-separated) whose artifact is built; an unknown name, or none built, is an
    error that says what to do, rather than an empty table."""
    names = [name.strip() for name in requested.split(",") if name.strip()]
    unknown = [name for name in names if name not in ARTIFACTS]
    if unknown:
        raise SystemExit(f"unknown backend(s) {', '.join(unknown)}: choose from {', '.join(ARTIFACTS)}")
    built = [name for name in names if (artifacts / ARTIFACTS[name]).exists()]
    if not built:
        raise SystemExit(f"none of {', '.join(ARTIFACTS[name] for name in names)} is in {artifacts}: run make build "
                         "(bf16: make variants)")
    return built


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=REPO / "build" / "artifacts")
    parser.add_argument("--batch-sizes", default="1,2,4,8,16,32")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per batch size")
    parser.add_argument("--out", type=Path, default=REPO / "loadtest" / "results" / "bare_model")
    parser.add_argument("--backends", default=",".join(ARTIFACTS), help="those whose artifact exists are measured")
    parser.add_argument("--check-cost", type=int, default=0, metavar="ROUNDS",
                        help="also measure the share of throughput the domain gate, the JPEG recheck and both take at "
                             f"the largest batch size, over ROUNDS alternating blocks of {CHECK_BLOCK} batches with and "
                             "without them")
    parser.add_argument("--gpu", type=int, default=None,
                        help="GPU id, as TorchServe assigns one to a worker (ONNX models run on it only where "
                             "onnxruntime has the CUDA provider; otherwise on the CPU: measure --backends torchscript)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    backends = available_backends(args.artifacts, args.backends)   # checked before the images load
    images = load_images(256)
    report = {name: measure(args.artifacts, name, sizes, images, args.seconds, args.gpu)
              for name in backends}
    costs = {name: [check_cost(args.artifacts, name, max(sizes), images, args.check_cost, check, args.gpu)
                    for check in CHECKS_OFF] for name in report if args.check_cost}
    args.out.mkdir(parents=True, exist_ok=True)
    cpu = cpu_info()
    (args.out / "bare_model.json").write_text(json.dumps({"cpu": cpu, **report, "check_cost": costs}, indent=2)
                                              + "\n")
    device = select_device(args.gpu)
    lines = [f"CPU: {cpu_line(cpu)}" + (f"; GPU: {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""), "",
             "| backend | batch size | images/s | batch latency p50 (ms) | p95 (ms) | backend alone p50 (ms) | "
             "domain gate p50 (ms) | JPEG recheck p50 (ms) |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {name} | {r['batch_size']} | {r['images_per_second']:.1f} | {r['batch_ms_p50']:.1f} | {r['batch_ms_p95']:.1f} "
              f"| {r['backend_ms_p50']:.1f} | {r['domain_gate_ms_p50']:.1f} | {r['jpeg_recheck_ms_p50']:.1f} |" for name, rows in report.items() for r in rows]
    if costs:
        lines += ["", "Share of throughput each check takes (the archive's settings vs the same with the check off, "
                  f"alternating blocks of {CHECK_BLOCK} batches; CIFAKE test images, about half answered FAKE and so "
                  "rechecked):", "",
                  "| backend | check | batch size | images/s with it | without | cost |", "|---|---|---|---|---|---|"]
        lines += [f"| {name} | {c['check']} | {c['batch_size']} | {c['images_per_second_with']:.1f} | "
                  f"{c['images_per_second_without']:.1f} | {100 * c['cost']:.1f} % |"
                  for name, rows in costs.items() for c in rows]
    (args.out / "bare_model.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
