"""The training loss and the checks on a run's config, without training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from detector.metadata import ModelMetadata
from detector.model import AlignedClassifier, load_weights, save_weights
from training.config import TrainConfig
from training.train import build_teacher, training_loss, validate_config

LABELS = torch.tensor([0, 1, 1, 0])


def test_without_a_teacher_the_loss_is_the_label_cross_entropy() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 2.0], [0.0, 0.0]])
    assert training_loss(logits, LABELS, None, TrainConfig()) == pytest.approx(F.cross_entropy(logits, LABELS).item())


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


def test_the_teacher_is_the_frozen_init_from_model(tmp_path) -> None:
    metadata = ModelMetadata(architecture="small_cnn")
    (tmp_path / "parent").mkdir()
    save_weights(AlignedClassifier(metadata), tmp_path / "parent")
    config = TrainConfig(init_from=str(tmp_path / "parent"), distill_weight=0.5)
    teacher = build_teacher(config, metadata, torch.device("cpu"))
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    loaded = teacher.state_dict()
    for key, value in load_weights(tmp_path / "parent").items():
        assert torch.equal(loaded[key], value), key
    assert build_teacher(TrainConfig(init_from=str(tmp_path / "parent")), metadata, torch.device("cpu")) is None


@pytest.mark.parametrize("changes, message", [
    ({"distill_weight": 0.5}, "set init_from"),
    ({"distill_weight": 1.5, "init_from": "model"}, "distill_weight must be in"),
    ({"distill_weight": 0.5, "distill_temperature": 0.0, "init_from": "model"}, "distill_temperature > 0"),
    ({"blur_kernel": 4}, "blur_kernel must be 0"),
    ({"blur_kernel": 1}, "blur_kernel must be 0"),
    ({"checkpoint_minutes": 0.0}, "checkpoint_minutes must be > 0"),
])
def test_a_run_refuses_settings_it_cannot_use(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_config(TrainConfig(**changes))
