"""Headless Locust runs of loadtest/locustfile.py and the statistics they write: the load tools' one runner
(sweep, scaling, overload, soak) and one reader of Locust's CSV files."""

from __future__ import annotations

import contextlib
import csv
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from detector.paths import REPO

LOCUSTFILE = REPO / "loadtest" / "locustfile.py"
START_BOUND_S = 120   # how long a busy machine may take to start Locust and answer the first request
STOP_TIMEOUT_S = 30   # users finish their request in flight when the time is up
EXIT_SLACK_S = 30     # Locust writing its CSVs and exiting


@dataclass(frozen=True)
class LocustRow:
    """One row of ``{prefix}_stats.csv``: a request name's counts, throughput and latency percentiles."""
    requests: int
    failures: int
    rps: float
    latency_ms: dict[str, float]   # by Locust's percentile column ("50%", "95%", "99%", "100%", ...); NaN when unanswered

    @classmethod
    def from_csv(cls, row: dict[str, str]) -> LocustRow:
        return cls(int(row["Request Count"]), int(row["Failure Count"]), float(row["Requests/s"]),
                   {column: float("nan") if value == "N/A" else float(value)
                    for column, value in row.items() if column.endswith("%")})


@dataclass(frozen=True)
class LocustStats:
    """A run's statistics: rows by request name, and its failures by message (``"503: {...}"`` -> count)."""
    rows: dict[str, LocustRow]
    failures: dict[str, int]

    @property
    def total(self) -> LocustRow:
        return self.rows["Aggregated"]


def read_stats(prefix: Path) -> LocustStats:
    """Parse ``{prefix}_stats.csv`` and ``{prefix}_failures.csv`` (Locust's ``--csv {prefix}``)."""
    with open(f"{prefix}_stats.csv") as handle:
        rows = {row["Name"]: LocustRow.from_csv(row) for row in csv.DictReader(handle)}
    failures: dict[str, int] = {}
    with open(f"{prefix}_failures.csv") as handle:
        for row in csv.DictReader(handle):
            message = re.sub(r"^\w+\('?|'?\)$", "", row["Error"])  # CatchResponseError('...') -> ...
            failures[message] = failures.get(message, 0) + int(row["Occurrences"])
    return LocustStats(rows, failures)


def run_locust(host: str, key_file: Path, model: str, users: int, seconds: float, prefix: Path, *,
               image_dir: Path | None = None, window: bool = True, by_status: bool = False, backoff: bool = False,
               log: Path | None = None, while_running: Callable[[], None] | None = None) -> LocustStats:
    """Run ``users`` users (all spawned at once) against ``host`` and return the statistics written under ``prefix``.

    ``window``: measure ``seconds`` from the first answer on (the locustfile's window, so a slow start-up costs
    nothing); without it the run lasts ``seconds`` from spawning, start-up included (the soak times events
    against it). ``image_dir``: post these files (fast start) instead of images sampled from CIFAKE.
    ``by_status``: one row per HTTP status (``"200"``, ``"503"``, ...), so each kind of answer gets its own
    latency. ``backoff``: users turned away wait as ops.client does before trying again. ``log``: Locust's
    output (else discarded). ``while_running`` is called about every 0.1 s until Locust exits.
    The locustfile's LOADTEST_* settings come from these arguments only, never from this process's environment."""
    settings = {"AI_DETECTOR_KEY_FILE": str(key_file), "AI_DETECTOR_MODEL": model}
    if image_dir is not None:
        settings["LOADTEST_IMAGE_DIR"] = str(image_dir)
    if window:
        settings["LOADTEST_WINDOW_SECONDS"] = str(seconds)
    if by_status:
        settings["LOADTEST_NAME_BY_STATUS"] = "1"
    if backoff:
        settings["LOADTEST_BACKOFF"] = "1"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LOADTEST_")}, **settings}
    run_time = seconds + START_BOUND_S if window else seconds
    command = [str(Path(sys.executable).with_name("locust")), "-f", str(LOCUSTFILE), "--headless", "-u", str(users),
               "-r", str(users), "-t", f"{int(run_time)}s", "--stop-timeout", str(STOP_TIMEOUT_S),
               "--host", host, "--csv", str(prefix), "--only-summary"]
    bound = seconds + START_BOUND_S + STOP_TIMEOUT_S + EXIT_SLACK_S
    see = log or f"{prefix}_*.csv"
    with open(log, "w") if log else contextlib.nullcontext(subprocess.DEVNULL) as output:
        locust = subprocess.Popen(command, env=env, cwd=REPO, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + bound
        while locust.poll() is None:
            if time.monotonic() > deadline:
                locust.kill()
                locust.wait()
                raise RuntimeError(f"Locust still ran after {bound:.0f} s and was killed: see {see}")
            if while_running:
                while_running()
            time.sleep(0.1)
    if locust.returncode not in (0, 1):  # 1: Locust saw failed requests, which the caller judges
        raise RuntimeError(f"Locust exited {locust.returncode}: see {see}")
    stats = read_stats(prefix)
    if stats.total.requests == 0:
        raise RuntimeError(f"Locust got no answer from {host} with {users} users: see {see}")
    return stats
