"""Fit a trained model's UNCERTAIN thresholds on its own validation split and write them into metadata.json.

    python -m training.abstention --model model --data ../shared/data/cifake [--coverage 0.975] [--domain-keep 0.99] \
        [--jpeg-recheck on|off]

Three checks decide UNCERTAIN (``detector.answer``): the domain gate (``detector.domain``: is the picture like
the training data?), the JPEG recheck (``detector.recheck``: does a FAKE answer survive re-encoding the
picture like CIFAKE?) and the confidence gate. They are fitted together: the domain threshold keeps
``--domain-keep`` of the validation split, the recheck turns away what it turns away there, then the
confidence threshold is the highest that still answers ``--coverage`` of it in all. ``--domain-keep 0``
removes the gate; without the flag a model keeps the gate it has (refitted) or stays without one; likewise
``--jpeg-recheck on|off``.

Training fits the confidence gate at its end (``abstention_coverage``); this refits a model folder without
retraining. The validation split is the run's own, rebuilt from the folder's config.json (seed,
val_fraction), so no test or outside image takes part.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detector.answer import answered
from detector.data import CifakeSource, load_split
from detector.domain import DomainGate, DomainGateSpec
from detector.metadata import ModelMetadata
from detector.model import calibrated_probabilities, fake_probability, load_model, predict_logits
from detector.recheck import JpegRecheck, passed_checks
from export.domain_gate import gate_folder
from training.config import TrainConfig, saved_config
from training.metrics import fit_abstention
from training.train import training_and_validation


def domain_spec(metadata: ModelMetadata, config: TrainConfig, keep: float | None) -> DomainGateSpec | None:
    """The gate to fit: ``keep`` 0 none, None the model's own (if any), else the default gate keeping ``keep``;
    its references come from the run's training portion, never from its validation split."""
    current = DomainGateSpec.of(metadata)
    if keep == 0 or (keep is None and current is None):
        return None
    spec = current if keep is None else DomainGateSpec(keep_validation=keep)
    return replace(spec, split_seed=config.seed, val_fraction=config.val_fraction)


def refit(model_dir: Path, data: Path, coverage: float | None = None, domain_keep: float | None = None,
          batch_size: int = 256, jpeg_recheck: bool | None = None) -> dict[str, Any]:
    """Fit, write ``min_confidence``, ``domain_gate``, ``jpeg_recheck`` and ``metrics.abstention`` into
    ``model_dir``'s metadata; returns the fit (``jpeg_recheck``: see ``recheck_of``)."""
    model, metadata = load_model(model_dir)
    config = saved_config(model_dir)
    source = CifakeSource(data, metadata.class_names)
    _, val_samples = training_and_validation(source, config)
    validation = load_split(source, val_samples, metadata.input_size, metadata.downsample_filter, "validation")
    logits = predict_logits(model, torch.from_numpy(validation.images), batch_size, "fp32")
    probabilities = calibrated_probabilities(logits, metadata.temperature).numpy()
    spec, in_domain = domain_spec(metadata, config, domain_keep), None
    if spec is not None:
        scores = DomainGate.load(gate_folder(metadata, data, spec), spec).scores(validation.images)
        spec = replace(spec, threshold=float(np.quantile(scores, 1.0 - spec.keep_validation)))
        in_domain = scores >= spec.threshold
    recheck = recheck_of(metadata, source, jpeg_recheck)
    passed = passed_checks(recheck, validation.images, probabilities, metadata.class_names.index("FAKE"),
                           fake_probability(model, metadata, batch_size), in_domain)
    abstention = fit_abstention(probabilities, validation.labels,
                                config.abstention_coverage if coverage is None else coverage, passed)
    if spec is not None:
        abstention.update(domain_threshold=spec.threshold, domain_keep=spec.keep_validation)
    if recheck is not None:   # as served: confident, in-domain pictures the recheck turns away
        served = answered(probabilities, abstention["min_confidence"], in_domain)
        abstention["compression_sensitive"] = float((served & ~passed).mean())
    replace(metadata, min_confidence=abstention["min_confidence"], domain_gate=spec and spec.to_dict(),
            jpeg_recheck=recheck and recheck.to_dict(),
            metrics={**metadata.metrics, "abstention": abstention}).save(model_dir)
    return abstention


def recheck_of(metadata: ModelMetadata, source: CifakeSource, wanted: bool | None) -> JpegRecheck | None:
    """``wanted`` False: none; None: the model's own (if any); True: the model's own, or the encoding of the
    first training file."""
    if wanted is False:
        return None
    current = JpegRecheck.of(metadata)
    if current is not None or not wanted:
        return current
    return JpegRecheck.read(source.read_bytes(source.split("train")[0]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("model"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cifake"))
    parser.add_argument("--coverage", type=float, help="share of validation answered (default: the run's config)")
    parser.add_argument("--domain-keep", type=float,
                        help="share of validation the domain gate keeps (0: no gate; default: the model's own gate)")
    parser.add_argument("--jpeg-recheck", choices=("on", "off"),
                        help="rechecking FAKE answers after re-encoding like CIFAKE (default: as the model has it)")
    args = parser.parse_args(argv)
    fit = refit(args.model, args.data, args.coverage, args.domain_keep,
                jpeg_recheck=None if args.jpeg_recheck is None else args.jpeg_recheck == "on")
    gate = (f"out of domain below {fit['domain_threshold']:.4f} (keeps {fit['domain_keep']:.2%}), "
            if "domain_threshold" in fit else "no domain gate, ")
    if "compression_sensitive" in fit:
        gate += f"JPEG recheck turns away {fit['compression_sensitive']:.2%}, "
    print(f"[abstention] {args.model}: UNCERTAIN {gate}below confidence {fit['min_confidence']:.4f}; on validation "
          f"{fit['coverage']:.2%} answered, {fit['accuracy_answered']:.2%} of them right", file=sys.stderr)


if __name__ == "__main__":
    main()
