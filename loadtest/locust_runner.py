"""One headless Locust run of loadtest/locustfile.py, read back from its CSV: the load tools' shared runner."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOCUSTFILE = REPO / "loadtest" / "locustfile.py"
START_BOUND_S = 120   # how long a busy machine may take to start Locust and answer the first request


def run_locust_rows(host: str, key_file: Path, model: str, users: int, seconds: int, prefix: Path,
                    image_dir: Path, by_status: bool = False, backoff: bool = False) -> dict[str, dict[str, str]]:
    """Measure ``seconds`` from the first answer on (the locustfile's window, so a slow start-up costs nothing)
    and return the rows of ``{prefix}_stats.csv`` by name: ``Aggregated``, and with ``by_status`` one row per
    HTTP status (``"200"``, ``"503"``, ...) so that answers of each kind get their own latency figures; with
    ``backoff`` users turned away wait as ops.client does before trying again (the locustfile's LOADTEST_BACKOFF)."""
    env = {**os.environ, "AI_DETECTOR_KEY_FILE": str(key_file), "AI_DETECTOR_MODEL": model,
           "LOADTEST_IMAGE_DIR": str(image_dir), "LOADTEST_WINDOW_SECONDS": str(seconds)}
    if by_status:
        env["LOADTEST_NAME_BY_STATUS"] = "1"
    if backoff:
        env["LOADTEST_BACKOFF"] = "1"
    command = [str(Path(sys.executable).with_name("locust")), "-f", str(LOCUSTFILE), "--headless", "-u", str(users),
               "-r", str(users), "-t", f"{seconds + START_BOUND_S}s", "--stop-timeout", "30",
               "--host", host, "--csv", str(prefix), "--only-summary"]
    subprocess.run(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                   timeout=seconds + START_BOUND_S + 60)
    with open(f"{prefix}_stats.csv") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    if int(rows["Aggregated"]["Request Count"]) == 0:
        raise RuntimeError(f"Locust got no answer within {START_BOUND_S} s of starting {users} users: see {prefix}_*.csv")
    return rows
