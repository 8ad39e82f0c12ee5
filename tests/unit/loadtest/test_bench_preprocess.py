"""The preprocessing benchmark measures what it says: draft and full decodes of the same photo agree."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from loadtest.bench_preprocess import aligned, median_ms, photo_jpeg


def test_photo_jpeg_has_the_requested_size_and_photo_like_compression() -> None:
    data = photo_jpeg(800, 600)
    assert Image.open(io.BytesIO(data)).size == (800, 600)
    assert 20_000 < len(data) < 800 * 600 * 3 // 4  # compresses, but not like a flat image


def test_draft_and_full_decodes_give_nearly_the_same_input() -> None:
    data = photo_jpeg(1600, 1200, seed=3)
    with_draft, without = aligned(data, 32, "bicubic", True), aligned(data, 32, "bicubic", False)
    assert with_draft.shape == without.shape == (32, 32, 3)
    assert np.abs(with_draft.astype(int) - without.astype(int)).mean() < 4
    assert median_ms(lambda: aligned(data, 32, "bicubic", True), repeats=3) > 0


def test_lower_quality_makes_a_smaller_file_of_the_same_picture() -> None:
    sizes = [len(photo_jpeg(800, 600, quality=q)) for q in (70, 80, 90)]
    assert sizes == sorted(sizes) and sizes[0] < 0.8 * sizes[-1]


def test_gpu_decode_timing_is_absent_without_a_gpu() -> None:
    import pytest
    import torch

    from loadtest.bench_preprocess import nvjpeg_ms

    if torch.cuda.is_available():
        pytest.skip("measured on the GPU instead (BENCHMARKS.md, GPU section)")
    assert nvjpeg_ms(photo_jpeg(320, 240), 32, repeats=1) is None
