"""What promote carries from the model folder it replaces: no data, no weights."""

from __future__ import annotations

from pathlib import Path

from detector.metadata import DomainGate, JpegRecheck, ModelMetadata
from training.promote import carry_checks

RECHECK = JpegRecheck(((1,) * 64, (2,) * 64))


def test_the_model_folders_domain_gate_and_recheck_carry_over_to_the_promoted_weights(tmp_path: Path) -> None:
    model, staging = tmp_path / "model", tmp_path / "staging"
    model.mkdir()
    staging.mkdir()
    gate = DomainGate(align_size=96, threshold=0.5)
    ModelMetadata(version="staged").save(staging)
    carry_checks(model, staging)                            # a first model: nothing to carry
    assert ModelMetadata.load(staging).domain_gate is None and ModelMetadata.load(staging).jpeg_recheck is None
    ModelMetadata(version="0.4.1").save(model)
    carry_checks(model, staging)                            # the model in place has neither
    assert ModelMetadata.load(staging).domain_gate is None and ModelMetadata.load(staging).jpeg_recheck is None
    ModelMetadata(version="0.4.4", domain_gate=gate, jpeg_recheck=RECHECK).save(model)
    carry_checks(model, staging)
    staged = ModelMetadata.load(staging)
    assert staged.domain_gate == gate and staged.jpeg_recheck == RECHECK and staged.version == "staged"
