"""Locust sweep against a fresh TorchServe on 127.0.0.1, with the bare-model ceiling measured in the same run.

    python -m loadtest.sweep --users 1,2,4,8,16,32 --seconds 20 --out loadtest/results/sweep

For each user count, one headless Locust run (the CIFAKE scenario of loadtest/locustfile.py)
writes its CSVs under --out; the summary (sweep.json, sweep.md) gives req/s, p50/p95/p99,
errors and the Locust process's own CPU use (it shares the machine with the server), and
sweep.png plots throughput and latency against users beside the bare-model ceiling.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from loadtest.bench_model import measure  # noqa: E402
from loadtest.images import load_images, write_images  # noqa: E402
from ops.server import render_config, start, stop  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
LOCUSTFILE = REPO / "loadtest" / "locustfile.py"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def run_locust(inference_url: str, key_file: Path, model: str, users: int, seconds: int, prefix: Path,
               image_dir: Path) -> dict:
    """One headless Locust run; returns its aggregated figures and its own CPU use (cores)."""
    env = {**os.environ, "AI_DETECTOR_KEY_FILE": str(key_file), "AI_DETECTOR_MODEL": model,
           "LOADTEST_IMAGE_DIR": str(image_dir)}
    command = [str(Path(sys.executable).with_name("locust")), "-f", str(LOCUSTFILE), "--headless", "-u", str(users),
               "-r", str(users), "-t", f"{seconds}s", "--stop-timeout", "30", "--host", inference_url,
               "--csv", str(prefix), "--only-summary"]
    before = os.times()
    subprocess.run(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    after = os.times()
    with open(f"{prefix}_stats.csv") as handle:
        total = next(row for row in csv.DictReader(handle) if row["Name"] == "Aggregated")
    if int(total["Request Count"]) == 0:
        raise RuntimeError(f"Locust sent no request in {seconds} s with {users} users: see {prefix}_*.csv")
    client_cpu_s = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {"users": users, "requests": int(total["Request Count"]), "failures": int(total["Failure Count"]),
            "rps": round(float(total["Requests/s"]), 1), "p50_ms": float(total["50%"]), "p95_ms": float(total["95%"]),
            "p99_ms": float(total["99%"]), "locust_cpu_cores": round(client_cpu_s / seconds, 2)}


def plot(rows: list[dict], ceiling: float, path: Path, title: str) -> None:
    users = [r["users"] for r in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(users, [r["rps"] for r in rows], "o-", label="server (Locust)")
    left.axhline(ceiling, color="grey", linestyle="--", label=f"bare model, best batch ({ceiling:.0f} img/s)")
    left.set_xscale("log", base=2)
    left.set_xlabel("concurrent users")
    left.set_ylabel("requests / s")
    left.set_ylim(bottom=0)
    left.legend()
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        right.plot(users, [r[key] for r in rows], "o-", label=key.replace("_ms", ""))
    right.set_xscale("log", base=2)
    right.set_yscale("log")
    right.set_xlabel("concurrent users")
    right.set_ylabel("latency (ms)")
    right.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", default="1,2,4,8,16,32")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--model", default="ai_detector", help="ai_detector (TorchScript) or ai_detector_onnx")
    parser.add_argument("--bare-seconds", type=float, default=8.0, help="measuring time per bare-model batch size")
    parser.add_argument("--ports", default="18080,18081,18082,17070,17071", help="loopback ports for the sweep's server")
    parser.add_argument("--out", type=Path, default=REPO / "loadtest" / "results" / "sweep")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    backend = "onnx" if args.model.endswith("onnx") else "torchscript"
    images = load_images(256)
    bare = measure(REPO / "build" / "artifacts", backend, [1, 8], images, seconds_per_size=args.bare_seconds)
    ceiling = max(r["images_per_second"] for r in bare)
    run_dir = Path(tempfile.mkdtemp(prefix="sweep_", dir=args.out))
    image_dir = write_images(images, run_dir / "images")  # the same images for Locust as for the bare model
    config = render_config(REPO / "config.properties", run_dir / "config.properties",
                           tuple(int(p) for p in args.ports.split(",")))
    client = start(config, REPO / "model_store", run_dir)
    try:
        rows = []
        for users in (int(u) for u in args.users.split(",")):
            rows.append(run_locust(client.inference_url, run_dir / "key_file.json", args.model, users, args.seconds,
                                   args.out / f"locust_{users}u", image_dir))
            print(f"[sweep] {rows[-1]}", flush=True)
    finally:
        stop(run_dir)
    report = {"model": args.model, "seconds_per_step": args.seconds, "bare_model": bare, "sweep": rows}
    (args.out / "sweep.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"Bare model ({backend}, handler stages, no HTTP): " +
             ", ".join(f"batch {r['batch_size']}: {r['images_per_second']:.1f} img/s, p50 {r['batch_ms_p50']:.1f} ms"
                       for r in bare), "",
             "| users | req/s | server / bare-model best | p50 (ms) | p95 (ms) | p99 (ms) | errors | Locust CPU (cores) |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['users']} | {r['rps']:.1f} | {r['rps'] / ceiling:.0%} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | "
              f"{r['p99_ms']:.0f} | {r['failures']} | {r['locust_cpu_cores']:.2f} |" for r in rows]
    (args.out / "sweep.md").write_text("\n".join(lines) + "\n")
    plot(rows, ceiling, args.out / "sweep.png", f"{args.model}: Locust sweep, {args.seconds} s per step")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
