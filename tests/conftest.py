"""Shared fixtures: the shipped model, the built artifacts and real CIFAKE images from shared/."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
CIFAKE = REPO.parent / "shared" / "data" / "cifake"
TEST_ZIP = CIFAKE / "test.zip"
MODEL_DIR = REPO / "model"
ARTIFACTS = REPO / "build" / "artifacts"
MODEL_STORE = REPO / "model_store"


settings.register_profile("ci", max_examples=300, derandomize=True)
settings.register_profile("long", max_examples=20_000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def require_cifake() -> Path:
    if not TEST_ZIP.exists():
        pytest.skip(f"CIFAKE archives not found at {CIFAKE} (shared/ absent): data-dependent test skipped")
    return CIFAKE


@pytest.fixture(scope="session")
def cifake_dir() -> Path:
    return require_cifake()


@pytest.fixture(scope="session")
def cifake_images(cifake_dir: Path) -> list[tuple[str, bytes]]:
    """40 real test images (20 REAL, 20 FAKE) as (class name, JPEG bytes)."""
    with zipfile.ZipFile(cifake_dir / "test.zip") as archive:
        names = sorted(archive.namelist())
        picked = [n for n in names if n.startswith("test/REAL/")][:20] + [n for n in names if n.startswith("test/FAKE/")][:20]
        return [(name.split("/")[1], archive.read(name)) for name in picked]


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    if not (ARTIFACTS / "metadata.json").exists():
        pytest.fail(f"{ARTIFACTS} not built: run `make build` (make test does it first)")
    return ARTIFACTS


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth random colour field with some structure (compresses like a photo, not like noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(height // 16, 2), max(width // 16, 2), 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
