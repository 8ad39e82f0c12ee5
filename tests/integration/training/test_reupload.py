"""Re-uploaded copies: each is a real trip through upscaling, encoding and the server's alignment, the bank is
the same whatever the workers, and training refuses a bank that does not cover its images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detector.data import CifakeSource
from detector.metadata import ModelMetadata
from detector.preprocessing import decode_image, load_aligned
from training import reupload


@pytest.fixture(scope="module")
def few(cifake_dir: Path):
    source = CifakeSource(cifake_dir / "test.zip")
    return source, source.split("test")[:6]


def test_a_copy_is_aligned_like_the_server_and_differs_from_the_original(few) -> None:
    source, samples = few
    data = source.read_bytes(samples[0])
    original = load_aligned(data, 32, "bicubic")
    copies = [reupload.reupload(decode_image(data), np.random.default_rng(seed), 32, "bicubic") for seed in range(6)]
    assert all(c.shape == (32, 32, 3) and c.dtype == np.uint8 for c in copies)
    assert all(not np.array_equal(c, original) for c in copies)
    assert np.mean([np.abs(c.astype(int) - original).mean() for c in copies]) < 20   # the same picture, re-uploaded
    again = reupload.reupload(decode_image(data), np.random.default_rng(0), 32, "bicubic")
    assert np.array_equal(again, copies[0])


def test_bank_is_the_same_for_any_number_of_workers_and_loads_by_key(few, tmp_path: Path) -> None:
    source, samples = few
    one = reupload.build_bank(source, samples, copies=2, seed=3, workers=1)
    two = reupload.build_bank(source, samples[:3], 2, 3, 2)
    assert one.shape == (6, 2, 3, 32, 32) and np.array_equal(one[:3], two)
    path = tmp_path / "bank.npz"
    reupload.save_bank(path, [s.key for s in samples], one, {"input_size": 32, "downsample_filter": "bicubic"})
    shuffled = [samples[4], samples[1]]
    assert np.array_equal(reupload.load_bank(path, shuffled, ModelMetadata()), one[[4, 1]])
    with pytest.raises(ValueError, match="lacks 1 of the run's images"):
        reupload.load_bank(path, [*shuffled, source.split("test")[10]], ModelMetadata())
    with pytest.raises(ValueError, match="aligned with"):
        reupload.load_bank(path, shuffled, ModelMetadata(downsample_filter="lanczos"))
