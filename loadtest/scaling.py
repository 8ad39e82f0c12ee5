"""Throughput and latency against workers × threads and against batch size × batch delay, in one run.

    python -m loadtest.scaling --model ai_detector --seconds 15 --out loadtest/results/scaling

One fresh TorchServe on 127.0.0.1 per thread count (threads per worker come from
$AI_DETECTOR_INTRA_OP_THREADS, read when a worker starts). For each configuration the archive is
registered through the management API with its batch size, delay and workers, then Locust measures
it twice: 1 user (latency without queueing) and --users users (saturation throughput).
Writes scaling.json, scaling.md and scaling.png under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from detector.hardware import cpu_info, cpu_line  # noqa: E402
from detector.paths import REPO  # noqa: E402
from handlers.settings import THREADS_ENV  # noqa: E402
from loadtest.images import load_images, write_images  # noqa: E402
from loadtest.sweep import SERVED, archive_name, benchmark_store, run_step, shipped_batching  # noqa: E402
from ops.server import start, stop  # noqa: E402
from ops.torchserve_config import Ports, open_model_api_without_models, render_config  # noqa: E402


@dataclass(frozen=True)
class Setup:
    workers: int
    threads: int
    batch_size: int
    max_batch_delay: int

    @property
    def name(self) -> str:
        return f"{self.workers}w x {self.threads}t, batch {self.batch_size} / {self.max_batch_delay} ms"


def setups(cores: int, batch_size: int, max_batch_delay: int) -> list[Setup]:
    """Workers x threads at the model's shipped batching, then batching at one worker on all cores:
    no delay, the delay at growing batch sizes, and longer delays."""
    threads = [Setup(workers, per_worker, batch_size, max_batch_delay)
               for workers, per_worker in ((1, cores), (cores, 1), (1, 1), (cores, cores), (2 * cores, 1))]
    batching = [Setup(1, cores, b, d) for b, d in ((1, 0), (8, 0), (8, 1), (16, 1), (32, 1), (8, 5), (32, 10))]
    return list(dict.fromkeys(threads + batching))


def measure_setups(model: str, configs: list[Setup], users: int, seconds: int, out: Path, ports: Ports) -> list[dict]:
    images = load_images(256)
    rows = []
    for thread_count in sorted({c.threads for c in configs}, reverse=True):
        run_dir = Path(tempfile.mkdtemp(prefix=f"scaling_{thread_count}t_", dir=out))
        image_dir = write_images(images, run_dir / "images")
        store = benchmark_store(run_dir, [model])
        config = render_config(REPO / "config.properties", run_dir / "config.properties", ports,
                               edit=open_model_api_without_models)
        os.environ[THREADS_ENV] = str(thread_count)       # inherited by TorchServe and its workers
        try:
            client = start(config, store, run_dir)
            for setup in (c for c in configs if c.threads == thread_count):
                client.register(archive_name(model), batch_size=setup.batch_size, max_batch_delay=setup.max_batch_delay,
                                initial_workers=setup.workers)
                single = run_step(client, run_dir, model, 1, seconds, out / f"locust_{len(rows)}_1u", image_dir)
                loaded = run_step(client, run_dir, model, users, seconds, out / f"locust_{len(rows)}_{users}u",
                                  image_dir)
                client.unregister(model=model)
                rows.append({**asdict(setup), "name": setup.name, "p50_ms_1_user": single["p50_ms"],
                             "rps": loaded["rps"], "p50_ms": loaded["p50_ms"], "p99_ms": loaded["p99_ms"],
                             "errors": single["failures"] + loaded["failures"], "locust_cpu_cores": loaded["locust_cpu_cores"]})
                print(f"[scaling] {rows[-1]}", flush=True)
        finally:
            stop(run_dir)
            os.environ.pop(THREADS_ENV, None)
    return rows


def summary(model: str, rows: list[dict], users: int, cpu: str) -> str:
    lines = [f"Model `{model}`; throughput at {users} Locust users, latency p50 also at 1 user. CPU: {cpu}.", "",
             f"| setup | req/s ({users} users) | p50 (ms) | p99 (ms) | p50 at 1 user (ms) | errors |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['rps']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['p50_ms_1_user']:.0f} | {r['errors']} |"
              for r in rows]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, title: str) -> None:
    figure, axis = plt.subplots(figsize=(10, 4.5))
    names = [r["name"] for r in rows]
    axis.barh(names, [r["rps"] for r in rows], color="C0")
    for index, row in enumerate(rows):
        axis.text(row["rps"], index, f" {row['rps']:.0f} req/s, p50 {row['p50_ms_1_user']:.0f} ms at 1 user", va="center", fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel("requests / s at saturation")
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ai_detector", help=f"one of {', '.join(m for m in SERVED if m != 'stock_baseline')}")
    parser.add_argument("--users", type=int, default=64, help="saturating load: enough to fill batches of 32")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1,
                        help="cores to split into workers x threads (default: this machine's)")
    parser.add_argument("--only", type=int, default=None, help="measure only the first N setups (smoke tests)")
    parser.add_argument("--ports", default="18180,18181,18182,17170,17171")
    parser.add_argument("--out", type=Path, default=REPO / "loadtest" / "results" / "scaling")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    configs = setups(args.cores, *shipped_batching(args.model))[: args.only]
    rows = measure_setups(args.model, configs, args.users, args.seconds, args.out, Ports.from_csv(args.ports))
    cpu = cpu_info()
    (args.out / "scaling.json").write_text(json.dumps({"model": args.model, "users": args.users, "cores_split": args.cores,
                                                       "cpu": cpu, "rows": rows}, indent=2) + "\n")
    (args.out / "scaling.md").write_text(summary(args.model, rows, args.users, cpu_line(cpu)))
    plot(rows, args.out / "scaling.png", f"{args.model}: workers x threads and batching ({args.cores} cores split)\n{cpu_line(cpu)}")
    print(summary(args.model, rows, args.users, cpu_line(cpu)))


if __name__ == "__main__":
    main()
