"""Grad-CAM explanations (Selvaraju et al., 2017) on the detector's last convolutional stage.

The target is the last spatial map before global pooling (``detector.backbones.CAM_LAYERS``):
for ResNet18 ``layer4``, 512 channels at 7×7 for align size 224, the coarsest and most
class-specific evidence the network has, which is what Grad-CAM is designed for. Earlier stages
give sharper but less decisive maps. The map covers the aligned input, i.e. the 32×32 image the
network saw (upsampled to align size).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from detector.backbones import CAM_LAYERS
from detector.model import AlignedClassifier

OVERLAY_SIZE = 224
OVERLAY_OPACITY = 0.5


def target_layer(architecture: str) -> str:
    return f"backbone.{CAM_LAYERS[architecture]}"


def grad_cam(model: AlignedClassifier, images: torch.Tensor, classes: Sequence[int]) -> np.ndarray:
    """(N, h, w) maps in [0, 1] of what drove ``classes`` for uint8 ``images`` (N, 3, s, s).

    Gradients flow only from the logits back to the target layer's output (the hook makes that
    output the leaf), so the weights need no gradients and nothing below the layer is differentiated.
    """
    captured: dict[str, torch.Tensor] = {}

    def capture(_module: torch.nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        captured["activations"] = output.detach().requires_grad_(True)
        return captured["activations"]

    handle = model.get_submodule(target_layer(model.architecture)).register_forward_hook(capture)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            logits = model(images.clone())
            chosen = logits[torch.arange(len(images)), torch.as_tensor(list(classes), dtype=torch.long)]
            (gradients,) = torch.autograd.grad(chosen.sum(), captured["activations"])
    finally:
        handle.remove()
    activations = captured["activations"].detach()
    weights = gradients.mean(dim=(2, 3), keepdim=True)       # channel importance: pooled gradients
    cam = F.relu((weights * activations).sum(dim=1))
    peak = cam.amax(dim=(1, 2), keepdim=True)
    return (cam / peak.clamp_min(1e-12)).float().numpy()


def overlay_png(image: np.ndarray, cam: np.ndarray, size: int = OVERLAY_SIZE) -> bytes:
    """PNG of the aligned image (H, W, 3 uint8) upscaled to ``size`` with the heat-map blended over it."""
    from matplotlib import colormaps  # only explanations need it

    base = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
    heat = np.asarray(Image.fromarray(cam.astype(np.float32), mode="F").resize((size, size), Image.Resampling.BILINEAR))
    colours = colormaps["inferno"](np.clip(heat, 0.0, 1.0))[..., :3] * 255.0
    blended = (1 - OVERLAY_OPACITY) * base + OVERLAY_OPACITY * colours
    buffer = io.BytesIO()
    Image.fromarray(blended.round().astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def explanation(image: np.ndarray, cam: np.ndarray, architecture: str) -> dict[str, object]:
    """The JSON an explanation carries: the layer, the raw map (rounded) and the overlay as base64 PNG."""
    return {"layer": target_layer(architecture), "map": np.round(cam, 4).tolist(),
            "png": base64.b64encode(overlay_png(image, cam)).decode()}
