"""Shared fixtures: the shipped model, the built artifacts, real CIFAKE images from shared/, and a fake
TorchServe context for handler tests without a server."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings
from PIL import Image

from detector.paths import REPO

CIFAKE = REPO.parent / "shared" / "data" / "cifake"
TEST_ZIP = CIFAKE / "test.zip"
OUTSIDE = REPO.parent / "shared" / "data" / "outside"   # evaluation only: never trained or fitted on
MODEL_DIR = REPO / "model"
ARTIFACTS = REPO / "build" / "artifacts"
MODEL_STORE = REPO / "model_store"


pytest_plugins = ["pytester"]   # tests/unit/test_tiers.py runs the unit tier's guard in a throwaway pytest

settings.register_profile("ci", max_examples=300, derandomize=True)
settings.register_profile("long", max_examples=20_000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tier is the folder: tests under tests/unit/ are marked ``unit``, under tests/integration/ ``integration``."""
    for item in items:
        item.add_marker(Path(item.path).relative_to(REPO / "tests").parts[0])


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


def outside_folder(root: Path) -> Path:
    """A small folder in the layout of shared/data/outside (real/, generated/, MANIFEST.tsv), with a stray file."""
    for name, count in (("real", 3), ("generated", 2)):
        (root / name).mkdir(parents=True)
        for index in range(count):
            (root / name / f"{index}.jpg").write_bytes(encode(photo(48, 40, seed=index), "JPEG", quality=90))
    (root / "generated" / "notes.txt").write_text("not an image")
    (root / "MANIFEST.tsv").write_text("file\tclass\tgenerator\ngenerated/0.jpg\tgenerated\tSDXL\n")
    return root


@pytest.fixture
def pickle_forbidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pickle entry point (and torch.load, which unpickles) made to explode: the load path must not use them."""
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used on the load path")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)


class FakeMetrics:
    """ts.metrics cache stand-in (handler tests without a server): records what the handler emits."""

    def __init__(self) -> None:
        self.emitted: list[tuple[str, float, str, dict[str, str], str]] = []

    def add_metric(self, name, value, unit, idx=None, dimensions=(), metric_type=None) -> None:
        self.emitted.append((name, value, unit, {d.name: d.value for d in dimensions}, metric_type.value))

    def total(self, name: str, **dimensions: str) -> float:
        return sum(v for n, v, _, dims, _ in self.emitted if n == name and all(dims.get(k) == x for k, x in dimensions.items()))


class FakeContext:
    """The parts of ts.context.Context the handler uses, recording per-request statuses and metrics."""

    def __init__(self, model_dir: Path, serialized_file: str, handler_yaml: dict | None = None) -> None:
        self.system_properties = {"model_dir": str(model_dir), "gpu_id": None, "batch_size": 8}
        self.manifest = {"model": {"modelName": "ai_detector", "serializedFile": serialized_file, "modelVersion": "1.2.3"}}
        self.model_yaml_config = {"handler": handler_yaml or {}}
        self.statuses: dict[int, tuple[int, str]] = {}
        self.content_types: dict[int, str] = {}
        self.metrics = FakeMetrics()
        self.request_ids: dict[int, str] | None = None   # TorchServe sets one id per HTTP request of the batch
        self.headers: dict[int, dict[str, str]] = {}     # per request; /explanations sets explain=True

    def get_request_header(self, idx: int, key: str) -> str | None:
        return self.headers.get(idx, {}).get(key)

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.statuses[idx] = (code, phrase)

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.content_types[idx] = value
