"""Locust scenario: real CIFAKE test images posted as raw JPEG bytes, auth token read automatically.

    .venv/bin/locust -f loadtest/locustfile.py --headless -u 4 -r 4 -t 30s --host http://127.0.0.1:8080

Environment: AI_DETECTOR_KEY_FILE (default run/key_file.json), CIFAKE (default ../shared/data/cifake),
AI_DETECTOR_MODEL (default ai_detector), LOADTEST_IMAGES (default 200 images kept in memory), or
LOADTEST_IMAGE_DIR (a folder of image files to post instead, which starts faster).
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

from locust import FastHttpUser, task

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from loadtest.images import images_for_load  # noqa: E402
from ops.client import read_keys  # noqa: E402

MODEL = os.environ.get("AI_DETECTOR_MODEL", "ai_detector")

IMAGES = images_for_load(int(os.environ.get("LOADTEST_IMAGES", "200")))


class CifakeUser(FastHttpUser):
    """Posts one 32x32 CIFAKE JPEG per request, as a service client would."""

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {read_keys()['inference']}", "Content-Type": "application/octet-stream"}

    @task
    def predict(self) -> None:
        with self.client.post(f"/predictions/{MODEL}", data=random.choice(IMAGES), headers=self.headers,
                              name=f"/predictions/{MODEL}", catch_response=True) as response:
            if response.status_code != 200 or not response.json():  # the stock baseline answers top-k, not "label"
                response.failure(f"{response.status_code}: {response.text[:200]}")
