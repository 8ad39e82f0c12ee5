"""The detector network: resolution alignment + normalisation + backbone, in one module.

The module takes uint8 images of shape (N, 3, input_size, input_size) and returns
2-class logits.  Upsampling to ``align_size`` and normalisation live inside the
module, so TorchScript/ONNX artifacts carry them and the server only batches
small uint8 tensors (cheap host->device copies; the upsample runs on the device).
"""

from __future__ import annotations

from pathlib import Path

import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from detector.backbones import build_backbone
from detector.metadata import ModelMetadata


class AlignedClassifier(nn.Module):
    """uint8 (N,3,s,s) -> float logits (N,C), upsampling to ``align_size`` on the way."""

    def __init__(self, metadata: ModelMetadata, dropout: float = 0.0) -> None:
        super().__init__()
        self.architecture = metadata.architecture
        self.align_size = metadata.align_size
        self.interpolation = metadata.interpolation
        self.register_buffer("mean", torch.tensor(metadata.mean).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(metadata.std).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.backbone = build_backbone(metadata.architecture, len(metadata.class_names), dropout)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.mean.dtype)
        x = (x - self.mean) / self.std
        if x.shape[-1] != self.align_size or x.shape[-2] != self.align_size:
            x = F.interpolate(x, size=[self.align_size, self.align_size], mode=self.interpolation, align_corners=False)
        return self.backbone(x)


def calibrated_probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Temperature-scaled softmax: the probabilities every consumer reports."""
    return torch.softmax(logits.float() / temperature, dim=-1)


WEIGHTS_FILENAME = "model.safetensors"


def save_weights(model: AlignedClassifier, directory: Path) -> Path:
    """Store the weights as fp16 safetensors (half the size, no pickle); buffers included."""
    state = {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).cpu().contiguous()
             for k, v in model.state_dict().items()}
    path = Path(directory) / WEIGHTS_FILENAME
    safetensors.torch.save_file(state, str(path))
    return path


def load_weights(directory: Path) -> dict[str, torch.Tensor]:
    """A folder's ``model.safetensors`` as an fp32 state dict (integer buffers as stored)."""
    state = safetensors.torch.load_file(str(Path(directory) / WEIGHTS_FILENAME))
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_model(directory: Path, device: torch.device | str = "cpu") -> tuple[AlignedClassifier, ModelMetadata]:
    """Rebuild the eager model from ``model.safetensors`` + ``metadata.json`` (fp32, eval mode)."""
    directory = Path(directory)
    metadata = ModelMetadata.load(directory)
    model = AlignedClassifier(metadata)
    model.load_state_dict(load_weights(directory))
    return model.to(device).eval(), metadata


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """Resolve a precision name to an autocast dtype (None = fp32) for this device."""
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@torch.no_grad()
def predict_logits(
    model: nn.Module, images: torch.Tensor, batch_size: int = 256, precision: str = "fp32"
) -> torch.Tensor:
    """Logits (fp32, on CPU) for a uint8 image tensor, batched on the model's device."""
    device = next(model.parameters()).device
    dtype = autocast_dtype(device, precision)
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            outputs.append(model(batch).float().cpu())
    return torch.cat(outputs) if outputs else torch.empty(0, 2)
