"""Training augmentation on uint8 N×3×H×W batches: re-uploaded copies (``training.reupload``), JPEG
re-encoding and blur (so the model does not hinge on fragile high-frequency cues that any re-upload
destroys), then random crops and flips.

Every random draw comes from the caller's generator, so a resumed run sees the same batches.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.v2.functional import gaussian_blur


@dataclass(frozen=True)
class AugmentSettings:
    """The augmentation fields of ``TrainConfig`` (documented there)."""

    crop_padding: int
    horizontal_flip: bool
    jpeg_probability: float
    jpeg_quality_min: int
    blur_probability: float
    blur_sigma_max: float
    reupload_probability: float
    blur_kernel: int

    @classmethod
    def from_config(cls, config: object) -> "AugmentSettings":
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})


def _chosen(n: int, probability: float, generator: torch.Generator) -> list[int]:
    return torch.nonzero(torch.rand(n, generator=generator) < probability).flatten().tolist()


def swap_in_reuploads(images: torch.Tensor, copies: torch.Tensor, probability: float,
                      generator: torch.Generator) -> torch.Tensor:
    """Replace a random share of the batch by one of each image's re-uploaded copies (N x copies x 3 x H x W)."""
    chosen = _chosen(len(images), probability, generator)
    if not chosen:
        return images
    picks = torch.randint(0, copies.shape[1], (len(chosen),), generator=generator)
    rows = torch.tensor(chosen)
    out = images.clone()
    out[rows.to(images.device)] = copies[rows.to(copies.device), picks.to(copies.device)].to(images.device)
    return out


def jpeg_reencode(images: torch.Tensor, probability: float, quality_min: int, generator: torch.Generator) -> torch.Tensor:
    """Re-encode a random share of the uint8 batch as JPEG at random qualities (on the CPU: PIL)."""
    chosen = _chosen(len(images), probability, generator)
    if not chosen:
        return images
    qualities = torch.randint(quality_min, 96, (len(chosen),), generator=generator).tolist()
    out = images.clone()
    host = images[chosen].permute(0, 2, 3, 1).cpu().numpy()
    for row, (index, quality) in enumerate(zip(chosen, qualities)):
        buffer = io.BytesIO()
        Image.fromarray(host[row]).save(buffer, format="JPEG", quality=quality)
        decoded = np.array(Image.open(buffer).convert("RGB"))
        out[index] = torch.from_numpy(decoded).permute(2, 0, 1).to(images.device)
    return out


def blur(images: torch.Tensor, probability: float, sigma_max: float, generator: torch.Generator,
         kernel: int) -> torch.Tensor:
    """Gaussian-blur a random share of the float batch, each image with its own sigma (``gaussian``)."""
    chosen = _chosen(len(images), probability, generator)
    if not chosen:
        return images
    sigmas = (0.3 + torch.rand(len(chosen), generator=generator) * max(sigma_max - 0.3, 0.0)).tolist()
    out = images.clone()
    for index, sigma in zip(chosen, sigmas):
        out[index] = gaussian(images[index], sigma, kernel)
    return out


def gaussian(image: torch.Tensor, sigma: float, kernel: int) -> torch.Tensor:
    """One image blurred with a ``kernel``-sided Gaussian; kernel 0 sizes it to the sigma (2·⌈3σ⌉ + 1), the
    full width an image editor's blur has, where a 3×3 kernel cuts a sigma-1 Gaussian short."""
    side = kernel or 2 * math.ceil(3 * sigma) + 1
    return gaussian_blur(image, kernel_size=[side, side], sigma=[sigma, sigma])


def crop_and_flip(x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random reflect-padded crops and horizontal flips, per sample, on the batch's device."""
    n, _, height, width = x.shape
    if padding:
        padded = F.pad(x, (padding,) * 4, mode="reflect")
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
        rows = (dy[:, None] + torch.arange(height, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(width, device=x.device))[:, None, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        channels = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, channels, rows, cols]
    if flip:
        mask = (torch.rand(n, generator=generator) < 0.5).to(x.device)[:, None, None, None]
        x = torch.where(mask, x.flip(-1), x)
    return x


def augment(images: torch.Tensor, settings: AugmentSettings, generator: torch.Generator,
            copies: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 batch -> augmented float batch (0..255), ready for the model; ``copies``: the batch's re-uploaded
    copies, swapped in with ``reupload_probability`` (no draw is made without them, so older runs replay)."""
    if copies is not None:
        images = swap_in_reuploads(images, copies, settings.reupload_probability, generator)
    images = jpeg_reencode(images, settings.jpeg_probability, settings.jpeg_quality_min, generator)
    x = blur(images.float(), settings.blur_probability, settings.blur_sigma_max, generator, settings.blur_kernel)
    return crop_and_flip(x, settings.crop_padding, settings.horizontal_flip, generator)
