"""CIFAKE in the Kaggle layout (``ROOT/{train,test}/{REAL,FAKE}/*.jpg``), from a folder or zips.

A source may be the unpacked folder, one zip whose entries follow the layout, or a
folder of such zips (the shape of ``shared/data/cifake``).  Every image goes through
``detector.preprocessing.load_aligned``, the same path the server uses.
"""

from __future__ import annotations

import hashlib
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detector.preprocessing import load_aligned

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass(frozen=True)
class Sample:
    """One labelled image: ``key`` is its path inside the layout, e.g. ``test/FAKE/12.jpg``."""

    key: str
    label: int
    location: str  # file path, or "zip path::entry"


class CifakeSource:
    """Index of a CIFAKE copy; reads raw bytes lazily so tests can sample a few images."""

    def __init__(self, root: Path | str, class_names: tuple[str, ...] = ("REAL", "FAKE")) -> None:
        self.root = Path(root)
        self.class_names = class_names
        self._zips: dict[str, zipfile.ZipFile] = {}
        self.samples = self._index()
        if not self.samples:
            raise FileNotFoundError(
                f"no CIFAKE images under {self.root}: expected ROOT/{{train,test}}/{{{','.join(class_names)}}}/*.jpg "
                "as a folder, a zip, or a folder of zips"
            )

    def _index(self) -> list[Sample]:
        if self.root.is_file() and zipfile.is_zipfile(self.root):
            zip_paths = [self.root]
        elif self.root.is_dir() and not any((self.root / s).is_dir() for s in ("train", "test")):
            zip_paths = sorted(self.root.glob("*.zip"))
        else:
            zip_paths = []
        samples: list[Sample] = []
        if zip_paths:
            for zip_path in zip_paths:
                with zipfile.ZipFile(zip_path) as archive:
                    for name in archive.namelist():
                        samples.extend(self._sample(name, f"{zip_path}::{name}"))
        elif self.root.is_dir():
            for path in self.root.glob("*/*/*"):
                samples.extend(self._sample(path.relative_to(self.root).as_posix(), str(path)))
        return sorted(samples, key=lambda s: s.key)

    def _sample(self, key: str, location: str) -> list[Sample]:
        parts = key.split("/")
        if len(parts) != 3 or parts[1] not in self.class_names or not parts[2].lower().endswith(IMAGE_SUFFIXES):
            return []
        return [Sample(key=key, label=self.class_names.index(parts[1]), location=location)]

    def split(self, name: str) -> list[Sample]:
        """All samples of ``train`` or ``test``, sorted by key."""
        return [s for s in self.samples if s.key.startswith(name + "/")]

    def read_bytes(self, sample: Sample) -> bytes:
        if "::" in sample.location:
            zip_path, entry = sample.location.split("::", 1)
            if zip_path not in self._zips:
                self._zips[zip_path] = zipfile.ZipFile(zip_path)
            return self._zips[zip_path].read(entry)
        return Path(sample.location).read_bytes()


def choose_samples(samples: list[Sample], count: int | None, seed: int) -> list[Sample]:
    """All samples (``count`` None or 0), or a seeded, sorted subset of ``count``: every tool that
    evaluates "a fixed sample" of a split picks it here, so the same seed means the same images."""
    if not count:
        return samples
    rng = np.random.default_rng(seed)
    return [samples[i] for i in np.sort(rng.choice(len(samples), min(count, len(samples)), replace=False))]


def content_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class LoadedSplit:
    """Decoded, aligned images (N,3,s,s uint8), labels, keys and per-file content hashes."""

    images: np.ndarray
    labels: np.ndarray
    keys: list[str]
    file_hashes: list[str]


def dataset_sha256(*splits: LoadedSplit) -> str:
    """Hash of every (key, content hash) pair: identifies exactly which data a model saw."""
    digest = hashlib.sha256()
    pairs = sorted(pair for split in splits for pair in zip(split.keys, split.file_hashes))
    for key, file_hash in pairs:
        digest.update(f"{key}\t{file_hash}\n".encode())
    return digest.hexdigest()


def load_split(
    source: CifakeSource, samples: list[Sample], size: int, filter_name: str, progress_label: str = ""
) -> LoadedSplit:
    """Decode and align every sample, printing progress for large splits."""
    images = np.empty((len(samples), 3, size, size), dtype=np.uint8)
    hashes: list[str] = []
    start = time.monotonic()
    for index, sample in enumerate(samples):
        data = source.read_bytes(sample)
        hashes.append(content_sha256(data))
        images[index] = load_aligned(data, size, filter_name).transpose(2, 0, 1)
        if progress_label and (index + 1) % 20000 == 0:
            rate = (index + 1) / (time.monotonic() - start)
            print(f"[data] {progress_label}: decoded {index + 1}/{len(samples)} ({rate:.0f} img/s)", file=sys.stderr, flush=True)
    labels = np.array([s.label for s in samples], dtype=np.int64)
    return LoadedSplit(images=images, labels=labels, keys=[s.key for s in samples], file_hashes=hashes)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified (train_idx, val_idx): the same ``fraction`` of every class goes to validation."""
    rng = np.random.default_rng(seed)
    train_parts, val_parts = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_val = int(round(len(members) * fraction))
        val_parts.append(members[:n_val])
        train_parts.append(members[n_val:])
    return np.sort(np.concatenate(train_parts)), np.sort(np.concatenate(val_parts))
