"""Augmentation: each operation does what it says, to the share of the batch it says, reproducibly."""

import numpy as np
import torch
from PIL import Image, ImageFilter

from training.augment import AugmentSettings, augment, blur, crop_and_flip, gaussian, jpeg_reencode, swap_in_reuploads


def _batch(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _high_frequency_energy(x: torch.Tensor) -> float:
    x = x.float()
    return float((x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean())


def test_jpeg_reencode_all_changes_every_image_and_keeps_dtype():
    images = _batch()
    out = jpeg_reencode(images, 1.0, 50, torch.Generator().manual_seed(1))
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert all(not torch.equal(a, b) for a, b in zip(out, images))
    assert _high_frequency_energy(out) < _high_frequency_energy(images)  # JPEG drops noise


def test_jpeg_reencode_zero_probability_is_identity():
    images = _batch()
    assert torch.equal(jpeg_reencode(images, 0.0, 50, torch.Generator().manual_seed(1)), images)


def test_blur_touches_about_the_requested_share():
    images = _batch(400).float()
    out = blur(images, 0.25, 0.8, torch.Generator().manual_seed(2), 3)
    changed = sum(not torch.equal(a, b) for a, b in zip(out, images))
    assert 60 <= changed <= 140
    assert _high_frequency_energy(out) < _high_frequency_energy(images)


def test_a_kernel_sized_to_the_sigma_blurs_like_an_image_editor_where_3x3_falls_short():
    noise = torch.from_numpy(np.random.default_rng(4).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    editor = np.asarray(Image.fromarray(noise.numpy()).filter(ImageFilter.GaussianBlur(1.0)), dtype=np.float32)
    image = noise.permute(2, 0, 1).float()

    def distance(kernel: int) -> float:
        return float(np.abs(gaussian(image, 1.0, kernel).permute(1, 2, 0).numpy() - editor)[4:-4, 4:-4].mean())

    assert distance(0) < 0.3 * distance(3)
    assert gaussian(image, 1.0, 0).shape == image.shape
    images = _batch(16).float()
    assert not torch.equal(blur(images, 1.0, 1.2, torch.Generator().manual_seed(5), kernel=0),
                           blur(images, 1.0, 1.2, torch.Generator().manual_seed(5), kernel=3))


def test_crop_and_flip_without_padding_only_mirrors():
    images = _batch().float()
    out = crop_and_flip(images, 0, True, torch.Generator().manual_seed(3))
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, images)]
    assert all(f or torch.equal(o, i) for f, o, i in zip(flipped, out, images))
    assert 0 < sum(flipped) < len(images)


def test_augment_is_reproducible_from_the_generator():
    settings = AugmentSettings(crop_padding=4, horizontal_flip=True, jpeg_probability=0.5, jpeg_quality_min=50,
                               blur_probability=0.5, blur_sigma_max=0.8, reupload_probability=0.5, blur_kernel=3)
    images = _batch()
    first = augment(images, settings, torch.Generator().manual_seed(4))
    again = augment(images, settings, torch.Generator().manual_seed(4))
    other = augment(images, settings, torch.Generator().manual_seed(5))
    assert first.dtype == torch.float32 and first.shape == images.shape
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_reuploaded_copies_replace_the_requested_share_with_one_of_each_image_s_own_copies():
    images = _batch(400)
    copies = torch.stack([_batch(400, seed=10), _batch(400, seed=11)], dim=1)   # 400 x 2 x 3 x 32 x 32
    out = swap_in_reuploads(images, copies, 0.25, torch.Generator().manual_seed(6))
    swapped = [i for i in range(400) if not torch.equal(out[i], images[i])]
    assert 60 <= len(swapped) <= 140
    assert all(torch.equal(out[i], copies[i, 0]) or torch.equal(out[i], copies[i, 1]) for i in swapped)
    assert {int(torch.equal(out[i], copies[i, 1])) for i in swapped} == {0, 1}   # both copies are drawn


def test_augment_without_copies_draws_as_before():
    """Runs without a re-upload bank replay exactly (the shipped recipe included): no extra random draw."""
    settings = AugmentSettings(crop_padding=4, horizontal_flip=True, jpeg_probability=0.5, jpeg_quality_min=50,
                               blur_probability=0.5, blur_sigma_max=0.8, reupload_probability=0.5, blur_kernel=3)
    images = _batch()
    generator = torch.Generator().manual_seed(7)
    expected = crop_and_flip(blur(jpeg_reencode(images, 0.5, 50, generator).float(), 0.5, 0.8, generator, 3), 4, True,
                             generator)
    assert torch.equal(augment(images, settings, torch.Generator().manual_seed(7)), expected)
