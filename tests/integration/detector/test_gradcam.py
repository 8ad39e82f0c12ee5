"""Grad-CAM on the shipped model with real CIFAKE images: shape, range, and that it depends on the class."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from detector.gradcam import explanation, grad_cam
from detector.model import load_model
from detector.preprocessing import load_aligned
from tests.conftest import MODEL_DIR


@pytest.fixture(scope="module")
def model_and_images(cifake_images):
    model, metadata = load_model(MODEL_DIR)
    model.requires_grad_(False)
    batch = np.stack([load_aligned(data, metadata.input_size, metadata.downsample_filter).transpose(2, 0, 1)
                      for _, data in cifake_images[:4] + cifake_images[-4:]])
    return model, metadata, torch.from_numpy(batch)


def test_maps_cover_the_last_stage_and_are_normalised(model_and_images) -> None:
    model, metadata, images = model_and_images
    predicted = model(images).argmax(1)
    cams = grad_cam(model, images, predicted.tolist())   # what the handler explains: the predicted class
    side = metadata.align_size // 32                      # ResNet18 downsamples by 32: 7x7 at 224
    assert cams.shape == (len(images), side, side)
    assert cams.min() >= 0.0 and np.allclose(cams.max(axis=(1, 2)), 1.0)
    assert all(cam.std() > 0.01 for cam in cams), "a constant map explains nothing"


def test_a_rejected_class_may_have_no_evidence_but_never_nan(model_and_images) -> None:
    model, _, images = model_and_images
    cams = grad_cam(model, images, (1 - model(images).argmax(1)).tolist())
    assert np.isfinite(cams).all() and cams.min() >= 0.0
    assert all(np.isclose(peak, 1.0) or peak == 0.0 for peak in cams.max(axis=(1, 2)))


def test_maps_depend_on_the_explained_class(model_and_images) -> None:
    model, _, images = model_and_images
    real, fake = grad_cam(model, images, [0] * len(images)), grad_cam(model, images, [1] * len(images))
    assert np.abs(real - fake).max() > 0.1


def test_explaining_leaves_no_hook_and_no_gradient_behind(model_and_images) -> None:
    model, _, images = model_and_images
    before = model(images)
    grad_cam(model, images[:2], [0, 1])
    assert torch.equal(model(images), before)
    assert not model.backbone.layer4._forward_hooks and all(p.grad is None for p in model.parameters())


def test_explanation_carries_the_raw_map_and_a_png_overlay(model_and_images) -> None:
    model, _, images = model_and_images
    cam = grad_cam(model, images[:1], [1])[0]
    body = explanation(images[0].numpy().transpose(1, 2, 0), cam, model.architecture)
    assert body["layer"] == "backbone.layer4" and np.array(body["map"]).shape == cam.shape
    overlay = Image.open(io.BytesIO(base64.b64decode(body["png"])))
    assert overlay.format == "PNG" and overlay.size == (224, 224) and overlay.mode == "RGB"
