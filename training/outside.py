"""Outside-CIFAKE report: what the detector answers for real photos and generated images that are not CIFAKE.

    python -m training.outside --model model --outside ../shared/data/outside --data ../shared/data/cifake \
        --out model/reports

Sets, each through the serving pipeline (``detector.pipeline``: bytes -> aligned 32×32 -> network -> calibrated P(FAKE)):
- the evaluation folder (``real/`` and ``generated/``; its ``MANIFEST.tsv`` names each file's generator),
- the real photographs that ship with scikit-image, scikit-learn and matplotlib, whole and cropped
  (``training.robustness.outside_photos``): every FAKE answer on them is a false positive,
- a fixed sample of CIFAKE's official test split, for reference.

Answers are the served ones: the domain gate (where the model has one) and the confidence gate.

Per class and per generator: answered REAL / FAKE and the share answered wrongly; the real-photo
false-positive rate; ROC-AUC of P(FAKE) between the folder's real and generated images; and the
risk-coverage curve of the calibrated confidence (answer only the most confident share of the images:
how often are those answers wrong). Writes outside_report.json, outside_report.md and outside.png.
Evaluation only: nothing here is fitted on these images.
"""

from __future__ import annotations

import csv
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from detector.data import CifakeSource, choose_samples  # noqa: E402
from detector.pipeline import DetectorPipeline  # noqa: E402
from export.domain_gate import offline_pipeline  # noqa: E402
from training.metrics import answered, roc_curve  # noqa: E402
from training.robustness import outside_photos  # noqa: E402
from training.report_cli import report_parser, write_report  # noqa: E402

CLASS_FOLDERS = {"real": "REAL", "generated": "FAKE"}   # evaluation folder name -> the label a right answer has
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
COVERAGES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)   # rows of the risk-coverage table


@dataclass(frozen=True)
class OutsideImage:
    path: Path
    truth: str        # "REAL" or "FAKE"
    generator: str    # "camera" for photographs


def read_outside_folder(folder: Path) -> list[OutsideImage]:
    """The images of ``folder/real`` and ``folder/generated``, with generators from MANIFEST.tsv where it lists them."""
    if not all((folder / name).is_dir() for name in CLASS_FOLDERS):
        raise FileNotFoundError(f"{folder} needs the sub-folders {sorted(CLASS_FOLDERS)} (see its README)")
    generators: dict[str, str] = {}
    manifest = folder / "MANIFEST.tsv"
    if manifest.exists():
        with manifest.open(newline="") as handle:
            generators = {row["file"]: row["generator"] for row in csv.DictReader(handle, delimiter="\t")}
    images = []
    for name, truth in CLASS_FOLDERS.items():
        for path in sorted((folder / name).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                default = "camera" if truth == "REAL" else "unknown generator"
                images.append(OutsideImage(path, truth, generators.get(f"{name}/{path.name}", default)))
    if not images:
        raise FileNotFoundError(f"no images under {folder}/real or {folder}/generated")
    return images


def checked(pipeline: DetectorPipeline, files: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated probabilities and, per file, whether the domain gate and the JPEG recheck let it be answered
    (every FAKE-leaning picture in domain rechecked, so the verdicts hold at every confidence threshold of a
    sweep), as served."""
    probabilities, verdicts = pipeline.assess(files, point=dataclasses.replace(pipeline.point, min_confidence=0.0))
    return probabilities, verdicts.answered


def answer_counts(truth: np.ndarray, probabilities: np.ndarray, min_confidence: float,
                  passed: np.ndarray | None = None) -> dict[str, Any]:
    """How many were answered REAL / FAKE / UNCERTAIN as the server answers (``detector.answer``), and the share
    of all images answered wrongly: UNCERTAIN is not wrong, but not answered either (``truth`` True = FAKE;
    ``probabilities`` N x (REAL, FAKE); ``passed``: False where the domain gate or the JPEG recheck abstains)."""
    kept = answered(probabilities, min_confidence) & (True if passed is None else passed)
    answered_fake = probabilities.argmax(axis=1) == 1
    wrong = kept & (answered_fake != truth.astype(bool))
    return {"images": int(len(truth)), "answered_real": int((kept & ~answered_fake).sum()),
            "answered_fake": int((kept & answered_fake).sum()), "uncertain": int((~kept).sum()),
            "wrong": float(wrong.mean()) if len(truth) else 0.0}


def risk_coverage(truth: np.ndarray, probabilities: np.ndarray,
                  answer_first: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, risk): answering only the k images ranked highest by ``answer_first`` (default: the most
    confident), the share of those answers that is wrong."""
    ranking = probabilities.max(axis=1) if answer_first is None else answer_first
    order = np.argsort(-ranking, kind="mergesort")
    wrong = ((probabilities[order].argmax(axis=1) == 1) != truth[order].astype(bool)).astype(float)
    answered = np.arange(1, len(truth) + 1)
    return answered / len(truth), np.cumsum(wrong) / answered


def risk_at(coverage: np.ndarray, risk: np.ndarray, share: float) -> float:
    """Risk when answering the most confident ``share`` of the images."""
    return float(risk[int(np.searchsorted(coverage, share - 1e-9))])


def roc_auc(truth: np.ndarray, p_fake: np.ndarray) -> float:
    fpr, tpr = roc_curve(truth.astype(np.int64), p_fake)
    return float(np.trapezoid(tpr, fpr))


Curves = dict[str, tuple[np.ndarray, np.ndarray]]


def evaluate(model_dir: Path, outside: Path, data: Path, cifake_images: int,
             seed: int) -> tuple[dict[str, Any], Curves]:
    """The report, and each set's (coverage, risk) curve for the plot."""
    pipeline = offline_pipeline(model_dir, data)
    metadata, threshold = pipeline.metadata, pipeline.point.min_confidence
    images = read_outside_folder(outside)
    truth = np.array([image.truth == "FAKE" for image in images])
    probabilities, passed = checked(pipeline, [image.path.read_bytes() for image in images])
    print(f"[outside] {outside}: {len(images)} images scored", file=sys.stderr, flush=True)
    per_generator = {}
    for generator in sorted({image.generator for image in images}, key=lambda g: (g != "camera", g)):
        chosen = np.array([image.generator == generator for image in images])
        per_generator[generator] = answer_counts(truth[chosen], probabilities[chosen], threshold, passed[chosen])
    scored = {f"outside folder ({len(images)})": (truth, probabilities, passed)}
    report: dict[str, Any] = {
        "model_version": metadata.version, "outside": str(outside), "seed": seed,
        "min_confidence": threshold, "domain_threshold": pipeline.point.domain_threshold,
        "jpeg_recheck": pipeline.point.recheck is not None,
        "classes": {"real photos": answer_counts(truth[~truth], probabilities[~truth], threshold, passed[~truth]),
                    "generated images": answer_counts(truth[truth], probabilities[truth], threshold, passed[truth])},
        "per_generator": per_generator,
        "roc_auc_real_vs_generated": roc_auc(truth, probabilities[:, 1]),
        "package_photos": {},
    }
    for name, files in outside_photos(seed).items():
        photo_probabilities, photo_passed = checked(pipeline, files)
        report["package_photos"][name] = answer_counts(np.zeros(len(files), dtype=bool), photo_probabilities, threshold,
                                                       photo_passed)
    source = CifakeSource(data, metadata.class_names)
    chosen = choose_samples(source.split("test"), cifake_images, seed)
    cifake_truth = np.array([sample.label == metadata.class_names.index("FAKE") for sample in chosen])
    cifake_probabilities, cifake_passed = checked(pipeline, [source.read_bytes(sample) for sample in chosen])
    report["cifake_test_sample"] = answer_counts(cifake_truth, cifake_probabilities, threshold, cifake_passed)
    scored[f"CIFAKE test sample ({len(chosen)})"] = (cifake_truth, cifake_probabilities, cifake_passed)
    # most confident first, pictures another check turns away last: the order in which the served gates give answers up
    # (``checked``: the recheck's verdicts hold at every threshold of the sweep)
    curves = {name: risk_coverage(set_truth, set_probabilities, set_probabilities.max(axis=1) - ~set_passed)
              for name, (set_truth, set_probabilities, set_passed) in scored.items()}
    report["risk_coverage"] = {name: {f"{share:.0%}": risk_at(coverage, risk, share) for share in COVERAGES}
                               for name, (coverage, risk) in curves.items()}
    return report, curves


def markdown(report: dict[str, Any]) -> str:
    def row(name: str, counts: dict[str, Any]) -> str:
        return (f"| {name} | {counts['images']} | {counts['answered_real']} | {counts['answered_fake']} | "
                f"{counts['uncertain']} | {counts['wrong']:.1%} |")

    header = ["| set | images | answered REAL | answered FAKE | UNCERTAIN | answered wrongly |",
              "|---|---:|---:|---:|---:|---:|"]
    real = report["classes"]["real photos"]
    lines = [f"# Outside CIFAKE: ai_detector {report['model_version']}", "",
             f"Images from `{report['outside']}` (evaluation only) and real photographs shipped with Python "
             "packages, decoded and aligned exactly as the server does. A right answer is REAL for a photograph "
             f"and FAKE for a generated image; UNCERTAIN below calibrated confidence {report['min_confidence']:.4f} "
             + (f"or below domain score {report['domain_threshold']:.4f} (out of domain) "
                if report.get("domain_threshold") is not None else "") +
             "(the model's thresholds, fitted on CIFAKE validation)"
             + (", and where a FAKE answer leans REAL once the picture is re-encoded like CIFAKE (the JPEG "
                "recheck)" if report.get("jpeg_recheck") else "") +
             ". *Answered wrongly* is a share of all the set's images. The risk-coverage table sweeps the "
             "confidence threshold, pictures another check turns away answered last.", "",
             f"**Real photos answered FAKE: {real['answered_fake']} of {real['images']} ({real['wrong']:.1%}).** "
             f"ROC-AUC of P(FAKE), real vs generated: {report['roc_auc_real_vs_generated']:.3f}.", "",
             "## By class", "", *header]
    lines += [row(name, counts) for name, counts in report["classes"].items()]
    if "cifake_test_sample" in report:
        lines.append(row("CIFAKE test sample (reference)", report["cifake_test_sample"]))
    lines += ["", "## By generator", "", *header]
    lines += [row(name, counts) for name, counts in report["per_generator"].items()]
    lines += ["", "## Real photographs shipped with Python packages (every FAKE answer is a false positive)", "",
              *header]
    lines += [row(name, counts) for name, counts in report["package_photos"].items()]
    shares = list(next(iter(report["risk_coverage"].values())))
    lines += ["", "## Risk-coverage (answer only the most confident share; how often those answers are wrong)", "",
              "| set | " + " | ".join(f"coverage {share}" for share in shares) + " |",
              "|---|" + "---:|" * len(shares)]
    lines += [f"| {name} | " + " | ".join(f"{risk:.1%}" for risk in by_share.values()) + " |"
              for name, by_share in report["risk_coverage"].items()]
    lines += ["", "Plot: `outside.png`.", ""]
    return "\n".join(lines)


def plot(report: dict[str, Any], curves: Curves, path: Path) -> None:
    """Answers per class / generator as stacked bars, and the risk-coverage curves."""
    groups = {**report["classes"], **{f"  {name}": counts for name, counts in report["per_generator"].items()},
              **{f"package photos: {name}": counts for name, counts in report["package_photos"].items()}}
    figure, (bars, curve) = plt.subplots(1, 2, figsize=(13, 0.32 * len(groups) + 3),
                                         gridspec_kw={"width_ratios": [1.4, 1]})
    names = list(groups)[::-1]
    left = np.zeros(len(names))
    for key, colour, text in (("answered_real", "#4c72b0", "answered REAL"), ("answered_fake", "#dd8452", "answered FAKE"),
                              ("uncertain", "#bbbbbb", "UNCERTAIN")):
        share = 100 * np.array([groups[name][key] / max(groups[name]["images"], 1) for name in names])
        bars.barh(names, share, left=left, color=colour, label=text)
        left += share
    bars.set_xlabel("% of the group's images")
    bars.set_title(f"ai_detector {report['model_version']} outside CIFAKE")
    bars.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=3, fontsize=8)
    bars.tick_params(axis="y", labelsize=7)
    for name, (coverage, risk) in curves.items():
        curve.plot(100 * coverage, 100 * risk, label=name)
    curve.set(xlabel="% answered (most confident first)", ylabel="% of answers wrong",
              title="Risk-coverage", xlim=(0, 100), ylim=(0, None))
    curve.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = report_parser(__doc__, outside=True)   # --data: a reference sample of CIFAKE's test split
    parser.add_argument("--cifake-images", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args(argv)
    report, curves = evaluate(args.model, args.outside, args.data, args.cifake_images, args.seed)
    write_report(args.out, "outside_report", report, markdown(report))
    plot(report, curves, args.out / "outside.png")


if __name__ == "__main__":
    main()
