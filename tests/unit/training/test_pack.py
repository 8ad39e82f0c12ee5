"""training.pack: the archive unpacks to the Kaggle layout with every key and byte of the packed split."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detector.data import CifakeSource
from training.pack import pack


def _jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture
def cifake_zip(tmp_path: Path) -> Path:
    """A zip in the Kaggle layout: 3 images per class of train, 2 of test, one stray entry."""
    path = tmp_path / "cifake.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for seed, (split, label, index) in enumerate((split, label, index) for split, count in (("train", 3), ("test", 2))
                                                     for label in ("REAL", "FAKE") for index in range(count)):
            archive.writestr(f"{split}/{label}/{index} ({label}).jpg", _jpeg(seed))
        archive.writestr("README.txt", "not an image")
    return path


def test_the_unpacked_archive_holds_the_packed_split_key_for_key_and_byte_for_byte(cifake_zip: Path,
                                                                                    tmp_path: Path) -> None:
    source = CifakeSource(cifake_zip)
    out = tmp_path / "train.tar.xz"
    assert pack(source, ["train"], out) == 6
    with tarfile.open(out) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    unpacked = CifakeSource(tmp_path / "unpacked")
    assert [s.key for s in unpacked.samples] == [s.key for s in source.split("train")]
    assert [unpacked.read_bytes(s) for s in unpacked.samples] == [source.read_bytes(s) for s in source.split("train")]
    assert not unpacked.split("test")


def test_the_same_data_packs_to_the_same_bytes_and_an_empty_split_is_an_error(cifake_zip: Path, tmp_path: Path) -> None:
    source = CifakeSource(cifake_zip)
    first, second = tmp_path / "a.tar.xz", tmp_path / "b.tar.xz"
    pack(source, ["train", "test"], first)
    pack(source, ["test", "train"], second)
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(tmp_path / "train_only.zip", "w") as archive:
        archive.writestr("train/REAL/0.jpg", _jpeg(0))
    with pytest.raises(ValueError, match="no images of split"):
        pack(CifakeSource(tmp_path / "train_only.zip"), ["test"], tmp_path / "c.tar.xz")
    assert not (tmp_path / "c.tar.xz").exists()
