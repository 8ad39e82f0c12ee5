"""Soak and fault injection against a running TorchServe: steady Locust load, every request
counted, worker memory sampled, and optionally one worker SIGKILLed mid-run.

    python -m loadtest.soak --seconds 600 --out loadtest/results/soak            # make soak
    python -m loadtest.soak --seconds 40 --kill-worker-at 10 --out /tmp/fault   # fault injection

Beside Locust (which counts raw answers, including the retriable ones) a thread drives the
repository's ``DetectorClient``, which retries retriable answers: it must see zero failures.
Writes ``soak.json`` and ``soak.md`` to ``--out`` and exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from detector.hardware import cpu_info, cpu_line
from detector.paths import REPO
from loadtest.images import load_images
from loadtest.locust_runner import LocustStats, run_locust
from ops.client import DetectorClient, is_retriable

RECOVERY_BOUND_S = 180   # how long a killed worker may take to come back, even on a busy machine


@dataclass
class ClientCount:
    sent: int = 0
    ok: int = 0
    failed: int = 0
    retries: int = 0


@dataclass
class SoakReport:
    model: str
    seconds: float
    users: int
    locust_requests: int = 0
    locust_ok: int = 0
    locust_failures: dict[str, int] = field(default_factory=dict)  # "status: message" -> count
    locust_unexplained_failures: int = 0   # failures that are neither retriable nor expected
    locust_rps: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    client: ClientCount = field(default_factory=ClientCount)
    killed_pid: int | None = None
    killed_at_s: float | None = None
    recovery_s: float | None = None        # SIGKILL -> a new worker READY
    memory_mib: list[tuple[float, float]] = field(default_factory=list)  # (seconds, total worker RSS)
    memory_growth_pct: float | None = None
    cpu: dict = field(default_factory=cpu_info)

    def add_locust(self, stats: LocustStats) -> None:
        """Locust's counts and latencies, with its failures split into retriable answers and the rest."""
        total = stats.total
        self.locust_requests = total.requests
        self.locust_rps = round(total.rps, 2)
        self.latency_ms = {p: total.latency_ms[p] for p in ("50%", "95%", "99%", "100%")}
        self.locust_failures = dict(stats.failures)
        self.locust_ok = total.requests - sum(stats.failures.values())
        self.locust_unexplained_failures = sum(
            n for message, n in stats.failures.items()
            if not (re.match(r"^\d{3}: ", message) and is_retriable(int(message[:3]), message[5:])))

    def checks(self, max_memory_growth_pct: float | None) -> list[str]:
        """The failed checks, in words (empty when the run passed)."""
        failed = []
        if self.locust_unexplained_failures:
            failed.append(f"{self.locust_unexplained_failures} Locust failures are not retriable answers")
        if self.client.failed or self.client.sent != self.client.ok:
            failed.append(f"the retrying client saw {self.client.failed} failures of {self.client.sent} requests")
        if self.killed_pid is not None and self.recovery_s is None:
            failed.append("the killed worker was not replaced")
        if max_memory_growth_pct is not None and (self.memory_growth_pct or 0.0) > max_memory_growth_pct:
            failed.append(f"worker memory grew {self.memory_growth_pct:.1f}% (limit {max_memory_growth_pct}%)")
        return failed


def worker_pids(client: DetectorClient, model: str) -> list[int]:
    return [int(w["pid"]) for w in client.describe(model)[0]["workers"] if w.get("status") == "READY" and w.get("pid")]


def rss_mib(pid: int) -> float:
    """Resident memory of one process (Linux /proc), 0 when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, flags=re.MULTILINE)
    return int(match.group(1)) / 1024 if match else 0.0


def _drive_client(client: DetectorClient, model: str, images: list[bytes], stop: threading.Event,
                  count: ClientCount) -> None:
    rng = random.Random(1)
    while not stop.is_set():
        count.sent += 1
        try:
            response = client.predict_response(rng.choice(images), model=model)
            ok = response.status_code == 200 and "label" in response.json()
        except Exception:  # noqa: BLE001 — any failure at all is what this counter is for
            ok = False
        count.ok += ok
        count.failed += not ok
    count.retries = client.retried


def _kill_and_time_recovery(client: DetectorClient, model: str, report: SoakReport, started: float,
                            deadline: float) -> None:
    pid = worker_pids(client, model)[0]
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    report.killed_pid, report.killed_at_s = pid, round(killed - started, 2)
    print(f"[soak] SIGKILL worker pid {pid} at {report.killed_at_s:.1f} s", flush=True)
    while time.monotonic() < deadline:
        try:
            if any(p != pid for p in worker_pids(client, model)):
                report.recovery_s = round(time.monotonic() - killed, 2)
                print(f"[soak] a new worker is READY {report.recovery_s:.1f} s after the kill", flush=True)
                return
        except Exception:  # noqa: BLE001 — the management API may answer errors while it restarts
            pass
        time.sleep(0.2)


def run_soak(client: DetectorClient, key_file: Path, images: list[bytes], out: Path, seconds: float = 60,
             users: int = 4, model: str = "ai_detector", kill_worker_at: float | None = None,
             sample_every: float = 5.0) -> SoakReport:
    """Load the server for ``seconds`` with Locust and the retrying client; count everything."""
    out.mkdir(parents=True, exist_ok=True)
    report = SoakReport(model=model, seconds=seconds, users=users)
    stop = threading.Event()
    driver = threading.Thread(target=_drive_client, args=(client, model, images, stop, report.client), daemon=True)
    started = next_sample = time.monotonic()

    def sample_and_inject() -> None:
        nonlocal next_sample
        now = time.monotonic()
        if now >= next_sample:
            try:
                pids = worker_pids(client, model)
                report.memory_mib.append((round(now - started, 1), round(sum(rss_mib(p) for p in pids), 1)))
            except Exception:  # noqa: BLE001 — a missed sample during a restart is not a failure
                pass
            next_sample = now + sample_every
        if kill_worker_at is not None and report.killed_pid is None and now - started >= kill_worker_at:
            _kill_and_time_recovery(client, model, report, started, deadline=time.monotonic() + RECOVERY_BOUND_S)

    driver.start()
    try:
        stats = run_locust(client.inference_url, key_file, model, users, seconds, out / "locust", window=False,
                           log=out / "locust.log", while_running=sample_and_inject)
    finally:
        stop.set()
        driver.join(timeout=120)
    report.add_locust(stats)
    if report.killed_pid is None and len(report.memory_mib) >= 8:
        report.memory_growth_pct = memory_growth_pct(report.memory_mib, seconds)
    (out / "soak.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    (out / "soak.md").write_text(markdown(report))
    return report


def memory_growth_pct(samples: list[tuple[float, float]], seconds: float) -> float:
    """Median RSS over the last 10 % of the run against 10-25 % (the first 10 % is warm-up), in percent:
    medians ignore the allocator's sawtooth, the wide gap keeps a steady leak visible."""
    def median_between(start: float, end: float) -> float:
        return float(np.median([m for t, m in samples if start * seconds <= t < end * seconds] or [samples[-1][1]]))

    warm = median_between(0.10, 0.25)
    return round(100 * (median_between(0.90, 1.01) - warm) / warm, 2)


def markdown(report: SoakReport) -> str:
    rows = [
        ("CPU", cpu_line(report.cpu)),
        ("model, users, duration", f"{report.model}, {report.users} Locust users + 1 retrying client, {report.seconds:.0f} s"),
        ("Locust requests / 200 OK", f"{report.locust_requests} / {report.locust_ok} ({report.locust_rps} req/s)"),
        ("Locust failures", ", ".join(f"{n}× `{m[:60]}`" for m, n in report.locust_failures.items()) or "none"),
        ("failures that are not retriable", str(report.locust_unexplained_failures)),
        ("latency p50 / p95 / p99 / max (ms)", " / ".join(f"{v:.0f}" for v in report.latency_ms.values())),
        ("retrying client: sent / OK / failed (retries)",
         f"{report.client.sent} / {report.client.ok} / {report.client.failed} ({report.client.retries})"),
    ]
    if report.killed_pid is not None:
        rows.append(("worker SIGKILLed at / recovered after",
                     f"{report.killed_at_s} s / {report.recovery_s} s (pid {report.killed_pid})"))
    if report.memory_mib:
        first, last = report.memory_mib[0], report.memory_mib[-1]
        growth = "n/a (worker replaced)" if report.memory_growth_pct is None else f"{report.memory_growth_pct:+.1f}%"
        rows.append(("worker RSS first / last sample (MiB)", f"{first[1]:.0f} / {last[1]:.0f}; median growth after warm-up {growth}"))
    return "| measure | value |\n| --- | --- |\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--model", default="ai_detector")
    parser.add_argument("--kill-worker-at", type=float, default=None, help="SIGKILL one worker this many seconds in")
    parser.add_argument("--max-memory-growth-pct", type=float, default=10.0)
    parser.add_argument("--inference-url", default="http://127.0.0.1:8080")
    parser.add_argument("--management-url", default="http://127.0.0.1:8081")
    parser.add_argument("--key-file", type=Path, default=REPO / "run" / "key_file.json")
    parser.add_argument("--out", type=Path, default=REPO / "loadtest" / "results" / "soak")
    args = parser.parse_args(argv)
    client = DetectorClient(args.inference_url, args.management_url, key_file=args.key_file)
    report = run_soak(client, args.key_file, load_images(100), args.out, args.seconds, args.users, args.model,
                      args.kill_worker_at, sample_every=max(args.seconds / 60, 1.0))
    print(markdown(report))
    failed = report.checks(args.max_memory_growth_pct if args.kill_worker_at is None else None)
    if failed:
        sys.exit("[soak] FAILED: " + "; ".join(failed))
    print(f"[soak] passed: report in {args.out}")


if __name__ == "__main__":
    main()
