"""Refitting a model folder's UNCERTAIN thresholds (domain gate, JPEG recheck and confidence) on its own validation
split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from detector.metadata import ModelMetadata
from tests.conftest import MODEL_DIR
from training import abstention


def test_refit_writes_the_threshold_and_its_validation_figures_and_nothing_else(cifake_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(MODEL_DIR, model, ignore=shutil.ignore_patterns("reports"))
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "max_val_images": 200}))   # a fast, capped split
    before = ModelMetadata.load(model)
    abstention.main(["--model", str(model), "--data", str(cifake_dir), "--precision", "0.99", "--coverage", "0.9"])
    after = ModelMetadata.load(model)
    fit = after.metrics["abstention"]
    assert after.min_confidence == fit["min_confidence"] == after.jpeg_recheck.min_fake > 0.5
    assert fit["fitted_on"] == "validation" and fit["target_coverage"] == 0.9 and 0.9 <= fit["coverage"] < 0.93
    assert fit["target_precision"] == 0.99 <= fit["accuracy_answered"]
    assert after.domain_gate.real_threshold == fit["real_domain_threshold"] > after.domain_gate.threshold
    unchanged = ("temperature", "version", "training_data_sha256", "align_size", "class_names")
    assert all(getattr(after, key) == getattr(before, key) for key in unchanged)
    assert {k: v for k, v in after.metrics.items() if k != "abstention"} == \
        {k: v for k, v in before.metrics.items() if k != "abstention"}
    gate = after.domain_gate   # the shipped model's gate, refitted on the same split
    assert gate is not None and gate.keep_validation == fit["domain_keep"] == 0.99
    assert fit["domain_threshold"] == gate.threshold and gate.split_seed == config["seed"]
    assert after.jpeg_recheck.quantization == before.jpeg_recheck.quantization and 0.0 <= fit["compression_sensitive"] < 0.02
    abstention.main(["--model", str(model), "--data", str(cifake_dir), "--precision", "0.99", "--coverage", "0.9",
                     "--domain-keep", "0", "--jpeg-recheck", "off"])
    ungated = ModelMetadata.load(model)
    assert ungated.domain_gate is None and "domain_threshold" not in ungated.metrics["abstention"]
    assert ungated.jpeg_recheck is None and "compression_sensitive" not in ungated.metrics["abstention"]
    assert ungated.metrics["abstention"]["accuracy_answered"] >= 0.99   # the confidence gate alone reaches it
    abstention.main(["--model", str(model), "--data", str(cifake_dir), "--precision", "0.99", "--coverage", "0.9",
                     "--domain-keep", "0", "--jpeg-recheck", "on"])
    rechecked = ModelMetadata.load(model).jpeg_recheck   # CIFAKE's tables, read from its files
    assert rechecked.quantization == before.jpeg_recheck.quantization
