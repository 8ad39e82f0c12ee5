"""What promote carries from the model folder it replaces: no data, no weights."""

from __future__ import annotations

from pathlib import Path

from detector.domain import DomainGateSpec
from detector.metadata import ModelMetadata
from training.promote import carry_domain_gate


def test_the_model_folders_domain_gate_carries_over_to_the_promoted_weights(tmp_path: Path) -> None:
    model, staging = tmp_path / "model", tmp_path / "staging"
    model.mkdir()
    staging.mkdir()
    gate = DomainGateSpec(align_size=96, threshold=0.5).to_dict()
    ModelMetadata(version="staged").save(staging)
    carry_domain_gate(model, staging)                       # a first model: nothing to carry
    assert ModelMetadata.load(staging).domain_gate is None
    ModelMetadata(version="0.4.1").save(model)
    carry_domain_gate(model, staging)                       # the model in place has no gate
    assert ModelMetadata.load(staging).domain_gate is None
    ModelMetadata(version="0.4.1", domain_gate=gate).save(model)
    carry_domain_gate(model, staging)
    staged = ModelMetadata.load(staging)
    assert staged.domain_gate == gate and staged.version == "staged"
