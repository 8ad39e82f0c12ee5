"""Outlier exposure's bank: random crops of photos, aligned as the server aligns them."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detector.metadata import ModelMetadata
from training import outliers


def _photo(path: Path, size: tuple[int, int], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    smooth = np.kron(rng.integers(0, 256, (size[1] // 16, size[0] // 16, 3)), np.ones((16, 16, 1))).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(smooth).save(path)
    return path


def test_crops_are_aligned_like_the_servers_input_and_repeat_with_the_seed() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (400, 300), (200, 40, 90)).save(buffer, format="PNG")
    crops = outliers.random_crops(buffer.getvalue(), 5, np.random.default_rng(1), 32, "bicubic")
    assert crops.shape == (5, 3, 32, 32) and crops.dtype == np.uint8
    assert np.abs(crops.reshape(5, 3, -1).mean(2) - np.array([200, 40, 90])).max() < 4   # one colour, any crop


def test_the_bank_holds_crops_of_every_readable_photo_and_skips_the_rest(tmp_path: Path, capsys) -> None:
    _photo(tmp_path / "a.jpg", (256, 192), 0)
    _photo(tmp_path / "nested" / "b.png", (160, 320), 1)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("ignored")
    files = outliers.photo_files(tmp_path)
    assert [p.name for p in files] == ["a.jpg", "broken.jpg", "b.png"]
    bank = outliers.build_bank(files, 3, seed=0, metadata=ModelMetadata())
    assert bank.shape == (6, 3, 32, 32)
    assert "skipped" in capsys.readouterr().err
    assert np.array_equal(bank, outliers.build_bank(files, 3, seed=0, metadata=ModelMetadata()))
    assert not np.array_equal(bank, outliers.build_bank(files, 3, seed=1, metadata=ModelMetadata()))
    assert len({crop.tobytes() for crop in bank}) == 6   # random crops, not one repeated


def test_a_bank_aligned_for_another_input_is_refused(tmp_path: Path) -> None:
    _photo(tmp_path / "photos" / "a.png", (128, 128), 0)
    bank = tmp_path / "bank.npz"
    outliers.write_bank(bank, tmp_path / "photos", 2, seed=0, metadata=ModelMetadata())
    assert outliers.load_bank(bank, ModelMetadata()).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="rebuild it"):
        outliers.load_bank(bank, ModelMetadata(downsample_filter="bilinear"))


def test_a_folder_without_photos_cannot_make_a_bank(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no readable photo"):
        outliers.build_bank(outliers.photo_files(tmp_path), 2, seed=0, metadata=ModelMetadata())
