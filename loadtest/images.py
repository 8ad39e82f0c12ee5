"""Real CIFAKE test images for load generation (kept free of Locust, whose import patches the process)."""

from __future__ import annotations

import os
import random
from pathlib import Path

from detector.data import CifakeSource

REPO = Path(__file__).resolve().parent.parent


def load_images(count: int, seed: int = 0) -> list[bytes]:
    """``count`` test-split JPEGs from ``$CIFAKE`` (default ../shared/data/cifake), a seeded sample."""
    source = CifakeSource(Path(os.environ.get("CIFAKE", REPO.parent / "shared" / "data" / "cifake")))
    samples = random.Random(seed).sample(source.split("test"), count)
    return [source.read_bytes(s) for s in samples]
