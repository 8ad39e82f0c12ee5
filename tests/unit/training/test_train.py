"""The training loss and the checks on a run's config, without training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from detector.metadata import ModelMetadata
from detector.model import AlignedClassifier, load_weights, save_weights
from training.config import TrainConfig
from training.train import build_teacher, frozen_modules, set_training_mode, training_loss, validate_config

LABELS = torch.tensor([0, 1, 1, 0])


def test_without_a_teacher_the_loss_is_the_label_cross_entropy() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 2.0], [0.0, 0.0]])
    config = TrainConfig(label_smoothing=0.1)
    assert training_loss(logits, LABELS, None, config) == pytest.approx(
        F.cross_entropy(logits, LABELS, label_smoothing=0.1).item())


def test_distillation_blends_the_label_loss_with_the_teachers_answers() -> None:
    teacher = torch.tensor([[3.0, -3.0], [-2.0, 2.0], [-1.0, 1.0], [0.5, -0.5]])
    only_teacher = TrainConfig(distill_weight=1.0, distill_temperature=2.0)
    assert training_loss(teacher.clone(), LABELS, teacher, only_teacher).item() == pytest.approx(0.0, abs=1e-6)
    student = torch.zeros(4, 2, requires_grad=True)
    training_loss(student, LABELS, teacher, only_teacher).backward()
    assert torch.all(torch.sign(student.grad[:, 1] - student.grad[:, 0]) == -torch.sign(teacher[:, 1] - teacher[:, 0]))
    half = TrainConfig(distill_weight=0.5, distill_temperature=2.0)
    hard = F.cross_entropy(student.detach(), LABELS)
    soft = training_loss(student.detach(), LABELS, teacher, only_teacher)
    assert training_loss(student.detach(), LABELS, teacher, half).item() == pytest.approx(0.5 * hard + 0.5 * soft)


def test_outlier_exposure_adds_the_outliers_distance_from_a_50_50_answer() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 2.0], [0.0, 0.0]])
    config = TrainConfig(outlier_weight=0.5)
    label_loss = training_loss(logits, LABELS, None, config)
    undecided = training_loss(logits, LABELS, None, config, torch.zeros(3, 2))
    assert undecided.item() == pytest.approx(label_loss.item() + 0.5 * torch.log(torch.tensor(2.0)).item())
    confident = torch.tensor([[4.0, -4.0], [-3.0, 3.0]], requires_grad=True)
    assert training_loss(logits, LABELS, None, config, confident.detach()) > undecided
    training_loss(logits, LABELS, None, config, confident).backward()
    assert torch.all(torch.sign(confident.grad[:, 0] - confident.grad[:, 1]) == torch.sign(confident[:, 0] - confident[:, 1]).detach())


def test_the_teacher_is_distill_from_when_set_else_init_from(tmp_path) -> None:
    metadata = ModelMetadata(architecture="small_cnn")
    for seed, name in enumerate(("parent", "shipped")):
        torch.manual_seed(seed)
        (tmp_path / name).mkdir()
        save_weights(AlignedClassifier(metadata), tmp_path / name)
    for distill_from, expected in ((None, "parent"), (str(tmp_path / "shipped"), "shipped")):
        config = TrainConfig(init_from=str(tmp_path / "parent"), distill_from=distill_from, distill_weight=0.5)
        teacher = build_teacher(config, metadata, torch.device("cpu"))
        assert not teacher.training
        loaded = teacher.state_dict()
        for key, value in load_weights(tmp_path / expected).items():
            assert torch.equal(loaded[key], value), key
    assert build_teacher(TrainConfig(init_from=str(tmp_path / "parent")), metadata, torch.device("cpu")) is None


@pytest.mark.parametrize("changes, message", [
    ({"distill_weight": 0.5}, "set one of them"),
    ({"distill_weight": 1.5, "init_from": "model"}, "distill_weight must be in"),
    ({"distill_weight": 0.5, "distill_temperature": 0.0, "init_from": "model"}, "distill_temperature > 0"),
    ({"outlier_weight": 0.5}, "needs outlier_bank"),
    ({"outlier_weight": -0.1, "outlier_bank": "bank.npz"}, "outlier_weight must be >= 0"),
    ({"outlier_weight": 0.5, "outlier_bank": "bank.npz", "outlier_batch_size": 0}, "outlier_batch_size >= 1"),
    ({"first_trained_module": "layer4"}, "set init_from or pretrained"),
    ({"blur_kernel": 4}, "blur_kernel must be 0"),
    ({"blur_kernel": 1}, "blur_kernel must be 0"),
    ({"checkpoint_minutes": 0.0}, "checkpoint_minutes must be > 0"),
])
def test_a_run_refuses_settings_it_cannot_use(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_config(TrainConfig(**changes))


def test_the_modules_before_the_first_trained_one_are_frozen_and_keep_their_batch_norm_statistics() -> None:
    model = AlignedClassifier(ModelMetadata(architecture="resnet18"))
    backbone = model.backbone
    frozen = frozen_modules(model, "layer4")
    assert frozen == [backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool,
                      backbone.layer1, backbone.layer2, backbone.layer3]
    assert frozen_modules(model, None) == []
    assert frozen_modules(model, "conv1") == []
    set_training_mode(model, TrainConfig(first_trained_module="layer4"))
    assert not any(m.training for module in frozen for m in module.modules())
    assert all(m.training for m in backbone.layer4.modules()) and backbone.fc.training
    set_training_mode(model, TrainConfig())
    assert all(m.training for m in model.modules())
    small = AlignedClassifier(ModelMetadata(architecture="small_cnn", align_size=32))
    assert frozen_modules(small, "fc") == [small.backbone.features]
    with pytest.raises(ValueError, match=r"not a top-level module of the resnet18 backbone: choose from \['conv1'"):
        frozen_modules(model, "layer5")
