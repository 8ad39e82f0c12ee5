"""Real CIFAKE test images for load generation (kept free of Locust, whose import patches the process)."""

from __future__ import annotations

import os
import random
from pathlib import Path

from detector.data import CifakeSource
from detector.paths import REPO


def load_images(count: int, seed: int = 0) -> list[bytes]:
    """``count`` test-split JPEGs from ``$CIFAKE`` (default ../shared/data/cifake), a seeded sample."""
    source = CifakeSource(Path(os.environ.get("CIFAKE", REPO.parent / "shared" / "data" / "cifake")))
    samples = random.Random(seed).sample(source.split("test"), count)
    return [source.read_bytes(s) for s in samples]


def write_images(images: list[bytes], directory: Path) -> Path:
    """Store images as files so a Locust process starts in milliseconds (its -t clock includes start-up)."""
    directory.mkdir(parents=True, exist_ok=True)
    for index, data in enumerate(images):
        (directory / f"{index:05d}.jpg").write_bytes(data)
    return directory


def images_for_load(count: int) -> list[bytes]:
    """The files in $LOADTEST_IMAGE_DIR when set (see write_images), else ``count`` sampled test images."""
    directory = os.environ.get("LOADTEST_IMAGE_DIR")
    if directory:
        return [path.read_bytes() for path in sorted(Path(directory).iterdir())]
    return load_images(count)
