"""Locust scenario: real CIFAKE test images posted as raw JPEG bytes, auth token read automatically.

    .venv/bin/locust -f loadtest/locustfile.py --headless -u 4 -r 4 -t 30s --host http://127.0.0.1:8080

Environment: AI_DETECTOR_KEY_FILE (default run/key_file.json), CIFAKE (default ../shared/data/cifake),
AI_DETECTOR_MODEL (default ai_detector), LOADTEST_IMAGES (default 200 images kept in memory), or
LOADTEST_IMAGE_DIR (a folder of image files to post instead, which starts faster).
LOADTEST_WINDOW_SECONDS: measure a window of that length that opens once every user is spawned and the
server has answered once (the statistics are reset then), and stop when it closes; on a busy machine a
slow start-up then shortens nothing. ``-t`` stays the outer bound.
LOADTEST_NAME_BY_STATUS=1: name each request by its HTTP status ("200", "503", ...), so that the statistics
give each kind of answer its own latency (loadtest.overload: how fast a full queue's 503 comes back).
LOADTEST_BACKOFF=1: after a retriable answer (503 "queue full", ...) a user waits as ops.client does before
its next request (jittered doubling, at most as many doublings as the client retries), instead of coming
straight back: without it, users turned away in 10 ms spin at hundreds of requests per second and, on a
small machine, measure the load generator's own CPU rather than the server's goodput.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

import gevent
from locust import FastHttpUser, events, task
from locust.runners import STATE_RUNNING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from loadtest.images import images_for_load  # noqa: E402
from ops.client import RETRIES, backoff_delay, is_retriable, read_keys  # noqa: E402

MODEL = os.environ.get("AI_DETECTOR_MODEL", "ai_detector")
NAME_BY_STATUS = os.environ.get("LOADTEST_NAME_BY_STATUS") == "1"
BACKOFF = os.environ.get("LOADTEST_BACKOFF") == "1"

IMAGES = images_for_load(int(os.environ.get("LOADTEST_IMAGES", "200")))


class CifakeUser(FastHttpUser):
    """Posts one 32x32 CIFAKE JPEG per request, as a service client would."""

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {read_keys()['inference']}", "Content-Type": "application/octet-stream"}
        self.turned_away = 0   # retriable answers in a row (LOADTEST_BACKOFF)

    def wait_time(self) -> float:
        if not BACKOFF or self.turned_away == 0:
            return 0.0
        return backoff_delay(min(self.turned_away, RETRIES) - 1)

    @task
    def predict(self) -> None:
        with self.client.post(f"/predictions/{MODEL}", data=random.choice(IMAGES), headers=self.headers,
                              name=f"/predictions/{MODEL}", catch_response=True) as response:
            if NAME_BY_STATUS:
                response.request_meta["name"] = str(response.status_code)
            retriable = is_retriable(response.status_code, response.text or "")
            self.turned_away = self.turned_away + 1 if retriable else 0
            if response.status_code != 200 or not response.json():  # the stock baseline answers top-k, not "label"
                response.failure(f"{response.status_code}: {response.text[:200]}")


def _measure_window(environment, seconds: float) -> None:
    """Wait (for as long as ``-t`` allows) until all users run and one answer came, then measure ``seconds``."""
    runner = environment.runner
    while runner.state != STATE_RUNNING or runner.stats.total.num_requests == 0:
        gevent.sleep(0.05)
    runner.stats.reset_all()
    opened = time.monotonic()
    gevent.sleep(seconds)
    print(f"[locust] measured {time.monotonic() - opened:.1f} s after the first answer", file=sys.stderr, flush=True)
    runner.quit()


@events.test_start.add_listener
def _start_window(environment, **_kwargs) -> None:
    window = os.environ.get("LOADTEST_WINDOW_SECONDS")
    if window:
        gevent.spawn(_measure_window, environment, float(window))
