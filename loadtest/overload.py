"""Load beyond capacity against a running server: find the saturation concurrency, then hold a multiple of it.

    python -m loadtest.overload --host http://127.0.0.1:8080 --key-file run/key_file.json --model ai_detector

Saturation: Locust runs at 1, 2, 4, ... users until two doublings in a row add under 10 % to the best
throughput so far (one would stop on noise); the user count of that best throughput is the saturation concurrency. Overload: ``--factor`` times that many users for
``--seconds``. The report (overload.json, overload.md) gives goodput (answers 200 per second) against the
saturation throughput, the share of 503s (TorchServe's full job queue: "Model has no worker to serve
inference request") and how fast each kind of answer came back, with the CPU it ran on.

The simulated clients behave like ops.client: a user turned away with 503 waits a jittered, doubling delay
before its next request. ``--no-backoff`` makes them come straight back instead, the worst case of clients
that ignore the convention; on a small machine whose cores the load generator shares, that measures mostly
how much CPU the generator's own 503 loop takes from the server.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from detector.hardware import cpu_info, cpu_line
from detector.paths import REPO
from loadtest.images import load_images, write_images
from loadtest.locust_runner import LocustRow, run_locust

PLATEAU_GAIN = 1.10   # a doubling of users that adds less than this factor of throughput does not count
PLATEAU_STEPS = 2     # doublings in a row that must fail to add before the search stops


def find_saturation(measure, max_users: int = 64) -> tuple[int, float]:
    """(users, req/s) at saturation; ``measure(users)`` returns the throughput of one run."""
    best_users, best = 1, measure(1)
    users, flat = 1, 0
    while flat < PLATEAU_STEPS and users * 2 <= max_users:
        users *= 2
        rps = measure(users)
        if rps >= best * PLATEAU_GAIN:
            best_users, best, flat = users, rps, 0
        else:
            flat += 1
    return best_users, best


def status_figures(rows: dict[str, LocustRow], seconds: float) -> dict[str, dict[str, float]]:
    """Per HTTP status: count, share of all answers, answers per second, p50 / p95 latency (ms)."""
    total = rows["Aggregated"].requests
    return {name: {"count": row.requests, "share": round(row.requests / total, 4),
                   "per_second": round(row.requests / seconds, 1),
                   "p50_ms": row.latency_ms["50%"], "p95_ms": row.latency_ms["95%"]}
            for name, row in rows.items() if name != "Aggregated"}


def run(host: str, key_file: Path, model: str, factor: int, seconds: int, step_seconds: int, out: Path,
        backoff: bool = True) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    image_dir = write_images(load_images(200), Path(tempfile.mkdtemp(prefix="overload_", dir=out)) / "images")

    def measure(users: int) -> float:
        stats = run_locust(host, key_file, model, users, step_seconds, out / f"saturation_{users}u",
                           image_dir=image_dir, by_status=True, backoff=backoff)
        rps = status_figures(stats.rows, step_seconds).get("200", {}).get("per_second", 0.0)
        print(f"[overload] {model}: {users} users -> {rps} answers 200 per second", flush=True)
        return rps

    users, saturation_rps = find_saturation(measure)
    overload_users = users * factor
    stats = run_locust(host, key_file, model, overload_users, seconds, out / f"overload_{overload_users}u",
                       image_dir=image_dir, by_status=True, backoff=backoff)
    statuses = status_figures(stats.rows, seconds)
    goodput = statuses.get("200", {}).get("per_second", 0.0)
    report = {"cpu": cpu_info(), "model": model, "host": host, "clients_back_off": backoff,
              "saturation": {"users": users, "rps": saturation_rps, "step_seconds": step_seconds},
              "overload": {"users": overload_users, "factor": factor, "seconds": seconds, "goodput_rps": goodput,
                           "goodput_vs_saturation": round(goodput / saturation_rps, 3) if saturation_rps else 0.0,
                           "statuses": statuses}}
    (out / "overload.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "overload.md").write_text(summary(report))
    print(summary(report), flush=True)
    return report


def summary(report: dict) -> str:
    saturation, overload = report["saturation"], report["overload"]
    lines = [f"# Overload: {report['model']} at {overload['factor']}x its saturation concurrency",
             "", f"On {cpu_line(report['cpu'])}, against {report['host']}; clients "
             + ("back off after a 503 as ops.client does." if report["clients_back_off"] else
                "come straight back after a 503 (--no-backoff)."), "",
             f"Saturation: {saturation['users']} users, {saturation['rps']} answers 200 per second "
             f"({saturation['step_seconds']} s per step).",
             f"Overload: {overload['users']} users for {overload['seconds']} s: goodput {overload['goodput_rps']} req/s "
             f"= {overload['goodput_vs_saturation']:.0%} of saturation.", "",
             "| status | answers | share | per second | p50 ms | p95 ms |", "|---|---:|---:|---:|---:|---:|"]
    for status, figures in sorted(overload["statuses"].items()):
        lines.append(f"| {status} | {figures['count']} | {figures['share']:.1%} | {figures['per_second']} | "
                     f"{figures['p50_ms']:.0f} | {figures['p95_ms']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="http://127.0.0.1:8080")
    parser.add_argument("--key-file", type=Path, default=REPO / "run" / "key_file.json")
    parser.add_argument("--model", default="ai_detector")
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--step-seconds", type=int, default=8, help="measuring time per saturation step")
    parser.add_argument("--no-backoff", dest="backoff", action="store_false",
                        help="clients retry a 503 at once instead of backing off like ops.client")
    parser.add_argument("--out", type=Path, default=REPO / "loadtest" / "results" / "overload")
    args = parser.parse_args(argv)
    run(args.host, args.key_file, args.model, args.factor, args.seconds, args.step_seconds, args.out, args.backoff)


if __name__ == "__main__":
    main()
