"""Locust sweep against a fresh TorchServe on 127.0.0.1: this project's models beside the stock-style
baseline, with the bare-model ceilings measured in the same run.

    python -m loadtest.sweep --users 1,2,4,8,16,32,64 --seconds 20 --out loadtest/results/sweep

One server holds every model named by --models: ``ai_detector`` (TorchScript), ``ai_detector_onnx``
and ``ai_detector_int8`` (ONNX Runtime, int8) with this project's handler and batching from
config.properties, and ``stock_baseline``: the same TorchScript artifact behind
TorchServe's own ImageClassifier (per-request PIL pipeline, fp32, batch size 1; loadtest/stock_handler.py).
For each model and user count, one headless Locust run writes its CSVs under --out; the summary
(sweep.json, sweep.md) gives req/s, p50/p95/p99, errors and Locust's own CPU use (it shares the
machine), each server figure beside the bare model of the same artifact (handler stages, no HTTP),
and sweep.png plots throughput and latency against users.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import matplotlib
import psutil

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from detector.hardware import cpu_info, cpu_line  # noqa: E402
from detector.paths import REPO  # noqa: E402
from export.archive import build_archive, write_sums  # noqa: E402
from loadtest.bench_model import ARTIFACTS as BARE_ARTIFACTS, measure  # noqa: E402
from loadtest.images import load_images, write_images  # noqa: E402
from loadtest.locust_runner import LocustRow, run_locust  # noqa: E402
from ops.client import DetectorClient  # noqa: E402
from ops.server import frontend_pid, start, stop  # noqa: E402
from ops.torchserve_config import Ports, TorchServeConfig, render_config  # noqa: E402

ARTIFACTS = REPO / "build" / "artifacts"
STOCK = "stock_baseline"
# model name -> the artifact the bare benchmark measures for it (loadtest.bench_model.ARTIFACTS)
SERVED = {"ai_detector": "torchscript", "ai_detector_onnx": "onnx", "ai_detector_int8": "int8", STOCK: "torchscript"}


def server_cpu_seconds(run_dir: Path) -> dict[str, float]:
    """CPU time used so far by TorchServe's Java frontend and, together, by its Python workers: with the
    client's own, it shows where the 2 cores went while the server ran below the bare model."""
    frontend = psutil.Process(frontend_pid(run_dir))
    workers = frontend.children(recursive=True)
    return {"frontend": sum(frontend.cpu_times()[:2]),
            "workers": sum(sum(w.cpu_times()[:2]) for w in workers if w.is_running())}


def answers_per_second(total: LocustRow) -> float:
    """Locust's request rate less its failures: the answers callers got per second."""
    return total.rps * (1 - total.failures / total.requests) if total.requests else 0.0


def run_step(client: DetectorClient, run_dir: Path, model: str, users: int, seconds: int, prefix: Path,
             image_dir: Path) -> dict:
    """One Locust run (loadtest.locust_runner); returns its aggregated figures and the CPU (cores) that Locust
    itself, the server's frontend and its workers used on average over the run. Users turned away (503 when the
    job queue is full: more users than ``job_queue_size``) back off as ``ops.client`` does, and ``rps`` counts
    answers only, so a step past the queue measures what callers get, not how fast refusals come back."""
    before, server_before, started = os.times(), server_cpu_seconds(run_dir), time.monotonic()
    total = run_locust(client.inference_url, client.key_file, model, users, seconds, prefix, image_dir=image_dir,
                       backoff=True).total
    after, server_after, wall = os.times(), server_cpu_seconds(run_dir), time.monotonic() - started
    client_cpu_s = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {"users": users, "requests": total.requests, "failures": total.failures,
            "rps": round(answers_per_second(total), 1), "p50_ms": total.latency_ms["50%"], "p95_ms": total.latency_ms["95%"],
            "p99_ms": total.latency_ms["99%"], "locust_cpu_cores": round(client_cpu_s / wall, 2),
            **{f"{part}_cpu_cores": round((server_after[part] - server_before[part]) / wall, 2) for part in server_after}}


def plot(report: dict, path: Path, seconds: int) -> None:
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4))
    for index, (model, rows) in enumerate(report["sweep"].items()):
        colour = f"C{index}"
        users = [r["users"] for r in rows]
        left.plot(users, [r["rps"] for r in rows], "o-", color=colour, label=model)
        left.axhline(report["ceilings"][model], color=colour, linestyle=":", linewidth=1)
        right.plot(users, [r["p50_ms"] for r in rows], "o-", color=colour, label=f"{model} p50")
        right.plot(users, [r["p99_ms"] for r in rows], "x--", color=colour, label=f"{model} p99")
    left.set(xscale="log", xlabel="concurrent users", ylabel="answers / s", ylim=(0, None),
             title="throughput (dotted: bare model of the same artifact)")
    left.set_xscale("log", base=2)
    right.set_xscale("log", base=2)
    right.set(yscale="log", xlabel="concurrent users", ylabel="latency (ms)", title="latency")
    left.legend(fontsize=8)
    right.legend(fontsize=7, ncol=2)
    figure.suptitle(f"Locust sweep, {seconds} s per step, one run, on {cpu_line(report['cpu'])}")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def configure_models(config: TorchServeConfig, models: list[str]) -> None:
    """Load exactly ``models``: this project's archives with their batching from config.properties,
    the stock baseline (ai_detector's settings otherwise) at batch size 1 on one worker."""
    if STOCK in models:
        config.add_model(STOCK, like="ai_detector", version="1.0", maxWorkers=1, batchSize=1, maxBatchDelay=0)
    for name in config.models:
        if name not in models:
            config.remove_model(name)


def shipped_batching(model: str) -> tuple[int, int]:
    """The model's batch size and delay in config.properties (its first version)."""
    settings = next(iter(TorchServeConfig.load(REPO / "config.properties").models[model].values()))
    return settings["batchSize"], settings["maxBatchDelay"]


def bare_batch_sizes(models: list[str]) -> list[int]:
    """Batch 1, 8, 16 and every batch size the served models are configured with: the ceiling is the
    bare model's best over the batches the server can form (the stock baseline's is 1)."""
    return sorted({1, 8, 16} | {shipped_batching(m)[0] for m in models if m != STOCK})


def archive_name(model: str) -> str:
    return f"{model}.mar"


def benchmark_store(run_dir: Path, models: list[str]) -> Path:
    """A model store with the built archives the sweep needs and the stock baseline."""
    store = run_dir / "model_store"
    store.mkdir()
    archives = []
    for name in models:
        if name == STOCK:
            archives.append(build_archive(STOCK, "1.0", ARTIFACTS / BARE_ARTIFACTS["torchscript"], None, store,
                                          handler=REPO / "loadtest" / "stock_handler.py", config_file=None))
        else:
            archives.append(Path(shutil.copy2(REPO / "model_store" / archive_name(name), store)))
    write_sums(store, archives)
    return store


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", default="1,2,4,8,16,32,64")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--models", default="ai_detector,ai_detector_onnx,stock_baseline",
                        help=f"comma-separated, from {', '.join(SERVED)}")
    parser.add_argument("--bare-seconds", type=float, default=8.0, help="measuring time per bare-model batch size")
    parser.add_argument("--ports", default="18080,18081,18082,17070,17071", help="loopback ports for the sweep's server")
    parser.add_argument("--out", type=Path, default=REPO / "loadtest" / "results" / "sweep")
    args = parser.parse_args(argv)
    models = args.models.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    images = load_images(256)
    bare = {name: measure(ARTIFACTS, name, bare_batch_sizes(models), images, seconds_per_size=args.bare_seconds)
            for name in dict.fromkeys(SERVED[m] for m in models)}
    run_dir = Path(tempfile.mkdtemp(prefix="sweep_", dir=args.out))
    image_dir = write_images(images, run_dir / "images")  # the same images for Locust as for the bare model
    store = benchmark_store(run_dir, models)
    config = render_config(REPO / "config.properties", run_dir / "config.properties", Ports.from_csv(args.ports),
                           edit=lambda settings: configure_models(settings, models))
    try:
        client = start(config, store, run_dir)   # inside the try: a server that never got ready is stopped too
        sweep = {model: [] for model in models}
        for model in models:
            for users in (int(u) for u in args.users.split(",")):
                sweep[model].append(run_step(client, run_dir, model, users, args.seconds,
                                             args.out / f"locust_{model}_{users}u", image_dir))
                print(f"[sweep] {model}: {sweep[model][-1]}", flush=True)
    finally:
        stop(run_dir)
    ceilings = {m: max(r["images_per_second"] for r in bare[SERVED[m]]) for m in models}
    report = {"cpu": cpu_info(), "seconds_per_step": args.seconds, "bare_model": bare, "ceilings": ceilings, "sweep": sweep}
    (args.out / "sweep.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "sweep.md").write_text(summary(report))
    plot(report, args.out / "sweep.png", args.seconds)
    print(summary(report))


def summary(report: dict) -> str:
    lines = [f"CPU: {cpu_line(report['cpu'])}", "", "Bare model (handler stages, no HTTP): " + "; ".join(
        f"{name} " + ", ".join(f"batch {r['batch_size']}: {r['images_per_second']:.1f} img/s (p50 {r['batch_ms_p50']:.1f} ms)"
                                for r in rows) for name, rows in report["bare_model"].items()), "",
             "| model | users | answers/s | server / bare model | p50 (ms) | p95 (ms) | p99 (ms) | turned away (503, retried) "
             "| CPU cores: Locust / frontend / workers |",
             "|---|---|---|---|---|---|---|---|---|"]
    for model, rows in report["sweep"].items():
        ceiling = report["ceilings"][model]
        lines += [f"| {model} | {r['users']} | {r['rps']:.1f} | {r['rps'] / ceiling:.0%} | {r['p50_ms']:.0f} | "
                  f"{r['p95_ms']:.0f} | {r['p99_ms']:.0f} | {r['failures']} | {r['locust_cpu_cores']:.2f} / "
                  f"{r['frontend_cpu_cores']:.2f} / {r['workers_cpu_cores']:.2f} |" for r in rows]
    best = {model: max(r["rps"] for r in rows) for model, rows in report["sweep"].items()}
    if STOCK in best:
        lines += ["", "Best throughput against the stock-style baseline: " + ", ".join(
            f"{model} {rps / best[STOCK]:.1f}x" for model, rps in best.items() if model != STOCK)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
