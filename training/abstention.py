"""Fit a trained model's UNCERTAIN thresholds on its own validation split and write them into metadata.json.

    python -m training.abstention --model model --data ../shared/data/cifake [--precision 0.995] [--coverage 0.91] \
        [--domain-keep 0.99] [--jpeg-recheck on|off]

Three checks decide UNCERTAIN (``detector.answer``): the domain gate (``detector.domain``: is the picture like
the training data?), the JPEG recheck (``detector.recheck``: does a FAKE answer survive re-encoding the
picture like CIFAKE?) and the confidence gate. They are fitted together (``training.metrics.fit_operating_point``):
the domain threshold keeps ``--domain-keep`` of the validation split; the confidence threshold is the lowest at
which ``--precision`` of the answers are right (a rechecked FAKE answer needs the same confidence for the
re-encoded picture); what ``--coverage`` leaves of the validation split is spent on REAL answers, which need a
domain score above the share of CIFAKE's REAL images that this allows, because outside CIFAKE only REAL answers
fail. ``--domain-keep 0`` removes the gate; without the flag a model keeps the gate it has (refitted) or stays
without one; likewise ``--jpeg-recheck on|off``.

Training fits the confidence gate at its end (``abstention_coverage``); this refits a model folder without
retraining. The validation split is the run's own, rebuilt from the folder's config.json (seed,
val_fraction), so no test or outside image takes part.
"""

from __future__ import annotations

import argparse
import io
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from PIL import Image, JpegImagePlugin

from detector.answer import COMPRESSION_SENSITIVE, OperatingPoint, decide
from detector.data import CifakeSource, load_split
from detector.domain import DomainScorer
from detector.metadata import SUBSAMPLING, DomainGate, JpegRecheck, ModelMetadata
from detector.model import calibrated_probabilities, load_model, predict_logits
from detector.recheck import reencode
from export.domain_gate import gate_folder
from training.config import TrainConfig, saved_config
from training.metrics import CheckScores, eager_p_fake, fit_operating_point
from training.train import training_and_validation

PRECISION = 0.995   # of validation answers right: 0.2 pt above the 99.3 % promised on the test split
COVERAGE = 0.91     # of validation answered at least: 1 pt above the 90 % promised on the test split


def domain_spec(metadata: ModelMetadata, config: TrainConfig, keep: float | None) -> DomainGate | None:
    """The gate to fit: ``keep`` 0 none, None the model's own (if any), else the default gate keeping ``keep``;
    its references come from the run's training portion, never from its validation split."""
    current = metadata.domain_gate
    if keep == 0 or (keep is None and current is None):
        return None
    spec = current if keep is None else DomainGate(keep_validation=keep)
    return replace(spec, split_seed=config.seed, val_fraction=config.val_fraction)


def refit(model_dir: Path, data: Path, precision: float = PRECISION, coverage: float = COVERAGE,
          domain_keep: float | None = None, batch_size: int = 256, jpeg_recheck: bool | None = None) -> dict[str, Any]:
    """Fit, write ``min_confidence``, ``domain_gate`` (with the REAL answers' threshold), ``jpeg_recheck`` (with the
    P(FAKE) a re-encoded picture needs) and ``metrics.abstention`` into ``model_dir``'s metadata; returns the fit
    (``jpeg_recheck``: see ``recheck_of``)."""
    model, metadata = load_model(model_dir)
    config = saved_config(model_dir)
    source = CifakeSource(data, metadata.class_names)
    _, val_samples = training_and_validation(source, config)
    validation = load_split(source, val_samples, metadata.input_size, metadata.downsample_filter, "validation")
    logits = predict_logits(model, torch.from_numpy(validation.images), batch_size, "fp32")
    probabilities = calibrated_probabilities(logits, metadata.temperature).numpy()
    spec, scores = domain_spec(metadata, config, domain_keep), None
    if spec is not None:
        scores = DomainScorer.load(gate_folder(metadata, data, spec), spec).scores(validation.images)
        spec = replace(spec, threshold=float(np.quantile(scores, 1.0 - spec.keep_validation)))
    recheck = recheck_of(metadata, source, jpeg_recheck)
    p_fake = eager_p_fake(model, metadata, batch_size)
    reencoded = None if recheck is None else p_fake(reencode(recheck, validation.images))
    fit = fit_operating_point(CheckScores(probabilities, scores, reencoded), validation.labels,
                              spec and spec.threshold, precision, coverage, recheck is not None)
    if spec is not None:
        spec = replace(spec, real_threshold=fit["real_domain_threshold"])
        fit.update(domain_threshold=spec.threshold, domain_keep=spec.keep_validation)
    if recheck is not None:
        recheck = replace(recheck, min_fake=fit["min_fake"])
    fitted = replace(metadata, min_confidence=fit["min_confidence"], domain_gate=spec, jpeg_recheck=recheck)
    # the one verdict at the fitted point must answer what the sweep counted
    verdicts = decide(probabilities, metadata.class_names, OperatingPoint.of(fitted), scores, validation.images, p_fake)
    if abs(float(verdicts.answered.mean()) - fit["coverage"]) > 1e-9:
        raise RuntimeError(f"the fitted point answers {verdicts.answered.mean():.4%} of validation through "
                           f"detector.answer.decide, the fit counted {fit['coverage']:.4%}")
    if recheck is not None:
        fit["compression_sensitive"] = verdicts.share(COMPRESSION_SENSITIVE)
    replace(fitted, metrics={**metadata.metrics, "abstention": fit}).save(model_dir)
    return fit


def recheck_of(metadata: ModelMetadata, source: CifakeSource, wanted: bool | None) -> JpegRecheck | None:
    """``wanted`` False: none; None: the model's own (if any); True: the model's own, or the encoding of the
    first training file."""
    if wanted is False:
        return None
    current = metadata.jpeg_recheck
    if current is not None or not wanted:
        return current
    return read_encoding(source.read_bytes(source.split("train")[0]))


def read_encoding(jpeg_file: bytes) -> JpegRecheck:
    """The encoding of one JPEG file of the training data (CIFAKE uses one for every file)."""
    image = Image.open(io.BytesIO(jpeg_file))
    if image.format != "JPEG":
        raise ValueError(f"the JPEG recheck reads its tables from a JPEG training file, not {image.format}")
    codes = {code: name for name, code in SUBSAMPLING.items()}
    sampling = JpegImagePlugin.get_sampling(image)
    if sampling not in codes:
        raise ValueError(f"the JPEG training file's chroma subsampling (Pillow code {sampling}) is not one of "
                         f"{sorted(SUBSAMPLING)}")
    return JpegRecheck(tuple(tuple(int(v) for v in image.quantization[key]) for key in sorted(image.quantization)),
                       codes[sampling])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("model"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cifake"))
    parser.add_argument("--precision", type=float, default=PRECISION, help="share of validation answers right")
    parser.add_argument("--coverage", type=float, default=COVERAGE,
                        help="share of validation answered at least; what it leaves is spent on REAL answers")
    parser.add_argument("--domain-keep", type=float,
                        help="share of validation the domain gate keeps (0: no gate; default: the model's own gate)")
    parser.add_argument("--jpeg-recheck", choices=("on", "off"),
                        help="rechecking FAKE answers after re-encoding like CIFAKE (default: as the model has it)")
    args = parser.parse_args(argv)
    fit = refit(args.model, args.data, args.precision, args.coverage, args.domain_keep,
                jpeg_recheck=None if args.jpeg_recheck is None else args.jpeg_recheck == "on")
    gate = (f"out of domain below {fit['domain_threshold']:.4f} (keeps {fit['domain_keep']:.2%}), "
            if "domain_threshold" in fit else "no domain gate, ")
    if fit.get("real_domain_threshold") is not None:
        gate += f"REAL answers below {fit['real_domain_threshold']:.4f} (keeps {fit['real_keep']:.1%} of REAL), "
    if "compression_sensitive" in fit:
        gate += f"JPEG recheck turns away {fit['compression_sensitive']:.2%}, "
    if not fit["precision_met"]:
        print(f"[abstention] {args.model}: no point reaches {fit['target_precision']:.2%} right at "
              f"{fit['target_coverage']:.1%} answered on validation; answering {fit['target_coverage']:.1%}",
              file=sys.stderr)
    print(f"[abstention] {args.model}: UNCERTAIN {gate}below confidence {fit['min_confidence']:.4f}; on validation "
          f"{fit['coverage']:.2%} answered, {fit['accuracy_answered']:.2%} of them right", file=sys.stderr)


if __name__ == "__main__":
    main()
