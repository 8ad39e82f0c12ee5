"""Evaluate a trained detector on a CIFAKE split and write JSON + Markdown + PNG reports.

    python -m training.evaluate --model model --data ../shared/data/cifake --split test --out model/reports

On the test split the report is given twice: on the full official split, and with the
test images that are byte-identical to a training image removed (378 in CIFAKE).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from detector.data import CifakeSource, LoadedSplit, choose_samples, content_sha256, load_split  # noqa: E402
from detector.answer import COMPRESSION_SENSITIVE, OUT_OF_DOMAIN, OperatingPoint, decide  # noqa: E402
from detector.metadata import ModelMetadata  # noqa: E402
from detector.model import calibrated_probabilities, load_model, predict_logits  # noqa: E402
from export.domain_gate import offline_gate  # noqa: E402
from training.metrics import classification_report, eager_p_fake, roc_curve, selective_figures  # noqa: E402
from training.report_cli import report_parser, write_report  # noqa: E402


def train_duplicate_mask(source: CifakeSource, split: LoadedSplit) -> np.ndarray | None:
    """True where an evaluated image is byte-identical to a training image; None without a train split."""
    train = source.split("train")
    if not train:
        return None
    train_hashes = {content_sha256(source.read_bytes(s)) for s in train}
    return np.array([h in train_hashes for h in split.file_hashes])


def evaluate(model_dir: Path, data: Path, split_name: str, limit: int | None = None, seed: int = 0,
             precision: str = "fp32", batch_size: int = 128) -> tuple[dict[str, Any], torch.Tensor, LoadedSplit]:
    """Run the eager model over a split through the server's preprocessing; returns the report."""
    model, metadata = load_model(model_dir)
    source = CifakeSource(data, metadata.class_names)
    samples = choose_samples(source.split(split_name), limit, seed)
    loaded = load_split(source, samples, metadata.input_size, metadata.downsample_filter, split_name)
    started = time.monotonic()
    logits = predict_logits(model, torch.from_numpy(loaded.images), batch_size, precision)
    seconds = time.monotonic() - started
    gate = offline_gate(metadata, data)
    scores = None if gate is None else gate.scores(loaded.images)
    probabilities = calibrated_probabilities(logits, metadata.temperature).numpy()
    verdicts = decide(probabilities, metadata.class_names, OperatingPoint.of(metadata), scores, loaded.images,
                      eager_p_fake(model, metadata, batch_size, precision))
    report: dict[str, Any] = {
        "model": {"architecture": metadata.architecture, "version": metadata.version, "align_size": metadata.align_size,
                  "temperature": metadata.temperature, "training_data_sha256": metadata.training_data_sha256},
        "data": str(data), "split": split_name, "precision": precision,
        **({"sample": {"images": limit, "seed": seed}} if limit else {}),
        "images_per_second": round(len(loaded.labels) / seconds, 1),
        "full": classification_report(logits, loaded.labels, metadata.class_names, metadata.temperature),
        "abstention": selective_figures(probabilities, loaded.labels, metadata.min_confidence, verdicts.answered),
    }
    if scores is not None:
        report["abstention"].update(domain_threshold=gate.spec.threshold, real_domain_threshold=gate.spec.real_threshold,
                                    out_of_domain=verdicts.share(OUT_OF_DOMAIN))
    if metadata.jpeg_recheck is not None:   # confident, in-domain pictures the recheck turns away
        report["abstention"]["compression_sensitive"] = verdicts.share(COMPRESSION_SENSITIVE)
    if split_name == "test" and not limit:
        duplicates = train_duplicate_mask(source, loaded)
        if duplicates is not None:
            keep = ~duplicates
            report["train_duplicates_removed"] = int(duplicates.sum())
            report["deduplicated"] = classification_report(logits[torch.from_numpy(keep)], loaded.labels[keep],
                                                           metadata.class_names, metadata.temperature)
    return report, logits, loaded


def markdown(report: dict[str, Any]) -> str:
    rows = [("full official split", report["full"])]
    if "deduplicated" in report:
        rows.append((f"without {report['train_duplicates_removed']} train duplicates", report["deduplicated"]))
    lines = [
        f"# Evaluation: {report['model']['architecture']} v{report['model']['version']} on `{report['split']}`",
        "",
        f"Data `{report['data']}`, {report['precision']} inference at {report['model']['align_size']} px, "
        f"temperature {report['model']['temperature']:.3f}.",
        "",
        "| subset | images | accuracy | ROC-AUC | ECE | NLL | REAL P/R/F1 | FAKE P/R/F1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        per = {c: "{precision:.4f} / {recall:.4f} / {f1:.4f}".format(**r["per_class"][c]) for c in ("REAL", "FAKE")}
        lines.append(f"| {name} | {r['count']} | {r['accuracy']:.2%} | {r['roc_auc']:.5f} | {r['ece']:.4f} | "
                     f"{r['nll']:.4f} | {per['REAL']} | {per['FAKE']} |")
    abstention = report["abstention"]
    real = abstention.get("real_domain_threshold")
    gate = (f" or below domain score {abstention['domain_threshold']:.4f}"
            + (f" ({real:.4f} for a REAL answer)" if real is not None else "")
            + f" (out of domain: {abstention['out_of_domain']:.2%} of the split)" if "domain_threshold" in abstention else "")
    rechecked_away = round(abstention.get("compression_sensitive", 0.0) * report["full"]["count"])
    recheck = (f", and where a FAKE answer does not stand once re-encoded like CIFAKE (the JPEG recheck: "
               f"{rechecked_away} image{'' if rechecked_away == 1 else 's'})" if "compression_sensitive" in abstention else "")
    lines += ["", f"As served, UNCERTAIN below calibrated confidence {abstention['min_confidence']:.4f}{gate} (fitted on "
              f"validation){recheck}: {abstention['coverage']:.2%} of the split answered REAL or FAKE, "
              f"{abstention['accuracy_answered']:.2%} of those right. The table above is the forced binary answer."]
    matrix = report["full"]["confusion_matrix"]["matrix"]
    lines += ["", "Confusion matrix (full split; rows true, columns predicted):", "",
              "| | pred REAL | pred FAKE |", "|---|---|---|",
              f"| true REAL | {matrix[0][0]} | {matrix[0][1]} |", f"| true FAKE | {matrix[1][0]} | {matrix[1][1]} |",
              "", "Plots: `confusion_matrix.png`, `roc.png`, `reliability.png`.", ""]
    return "\n".join(lines)


def plot(report: dict[str, Any], logits: torch.Tensor, labels: np.ndarray, metadata: ModelMetadata, out: Path) -> None:
    """Confusion matrix, ROC curve and reliability diagram as PNGs."""
    full = report["full"]
    matrix = np.array(full["confusion_matrix"]["matrix"])
    figure, axis = plt.subplots(figsize=(4, 3.5))
    axis.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        axis.text(j, i, str(value), ha="center", va="center", color="black" if value < matrix.max() / 2 else "white")
    axis.set_xticks(range(2), [f"pred {c}" for c in metadata.class_names])
    axis.set_yticks(range(2), [f"true {c}" for c in metadata.class_names])
    axis.set_title(f"Confusion matrix ({full['accuracy']:.2%})")
    figure.tight_layout()
    figure.savefig(out / "confusion_matrix.png", dpi=120)
    plt.close(figure)

    fake = metadata.class_names.index("FAKE")
    probabilities = calibrated_probabilities(logits, metadata.temperature).numpy()
    fpr, tpr = roc_curve((labels == fake).astype(np.int64), probabilities[:, fake])
    figure, axis = plt.subplots(figsize=(4, 4))
    axis.plot(fpr, tpr, label=f"AUC {full['roc_auc']:.4f}")
    axis.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    axis.set(xlabel="false positive rate (REAL called FAKE)", ylabel="true positive rate (FAKE caught)", title="ROC")
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(out / "roc.png", dpi=120)
    plt.close(figure)

    bins = full["reliability"]
    figure, axis = plt.subplots(figsize=(4, 4))
    axis.bar([b["low"] for b in bins], [b["accuracy"] for b in bins], width=[b["high"] - b["low"] for b in bins],
             align="edge", edgecolor="black", alpha=0.7, label="accuracy")
    axis.plot([0, 1], [0, 1], "k:", linewidth=0.8, label="perfect calibration")
    axis.set(xlabel="confidence", ylabel="accuracy", xlim=(0.5, 1), ylim=(0, 1),
             title=f"Reliability (ECE {full['ece']:.4f}, T={metadata.temperature:.2f})")
    axis.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(out / "reliability.png", dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = report_parser(__doc__)
    parser.add_argument("--split", default="test", choices=("train", "test"))
    parser.add_argument("--limit", type=int, help="evaluate a seeded random sample of this many images")
    parser.add_argument("--seed", type=int, default=0, help="the sample's seed (with --limit)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16", "auto"))
    args = parser.parse_args(argv)
    report, logits, loaded = evaluate(args.model, args.data, args.split, args.limit, args.seed, precision=args.precision)
    write_report(args.out, f"{args.split}_report", report, markdown(report))
    plot(report, logits, loaded.labels, ModelMetadata.load(args.model), args.out)


if __name__ == "__main__":
    main()
