"""Outside-CIFAKE report: how often an answer is right on pictures that are not CIFAKE, per class.

    python -m training.outside --model model --outside ../shared/data/outside ../shared/data/outside2 \
        --data ../shared/data/cifake --out model/reports

A caller acts on an answer: a REAL answer says "not generated", a FAKE one "generated". So the report leads with,
per evaluation folder (``real/`` and ``generated/``; ``MANIFEST.tsv`` names each file's generator), how often
each kind of answer is right and how many answers that rests on, and the share of pictures answered at all.
Every figure is the served verdict (``detector.pipeline``: bytes -> aligned 32×32 -> network, domain gate, JPEG
recheck -> ``detector.answer.decide``). Beside the folders: the real photographs that ship with scikit-image,
scikit-learn and matplotlib (``training.robustness.outside_photos``; every FAKE answer is wrong) and CIFAKE's
validation split.

The curve: the points ``training.abstention`` chooses from (``training.metrics.operating_points``: each asks
REAL answers for a higher domain score), as the share of CIFAKE validation answered against how often REAL and
FAKE answers are right in each folder, with the model's own point marked. Evaluation only: the folders never
choose a number; the model's thresholds come from CIFAKE validation. Writes outside_report.json,
outside_report.md and outside.png.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from detector.data import CifakeSource  # noqa: E402
from detector.pipeline import DetectorPipeline  # noqa: E402
from detector.recheck import reencode  # noqa: E402
from export.domain_gate import offline_pipeline, split_portions  # noqa: E402
from training.metrics import CheckScores, operating_points  # noqa: E402
from training.robustness import outside_photos  # noqa: E402
from training.report_cli import OUTSIDE, report_parser, write_report  # noqa: E402

CLASS_FOLDERS = {"real": "REAL", "generated": "FAKE"}   # evaluation folder name -> the label a right answer has
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
CURVE_ROWS = (1.0, 0.97, 0.94, 0.91, 0.88, 0.85, 0.8, 0.7)   # shares of CIFAKE's REAL images a REAL answer keeps


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


def check_scores(pipeline: DetectorPipeline, files: list[bytes], batch_size: int = 128) -> CheckScores:
    """What every check measures on these files as served, with every picture re-encoded and rechecked (not only
    those about to be answered FAKE), so that any point of a sweep can be decided from it."""
    parts: dict[str, list[np.ndarray]] = {"probabilities": [], "domain": [], "reencoded": []}
    for images, probabilities in pipeline.calibrated_batches(files, batch_size):
        parts["probabilities"].append(probabilities)
        if pipeline.domain is not None:
            parts["domain"].append(pipeline.domain_scores(images))
        if pipeline.point.recheck is not None:
            parts["reencoded"].append(pipeline.p_fake(reencode(pipeline.point.recheck, images)))
    joined = {key: np.concatenate(value) if value else None for key, value in parts.items()}
    return CheckScores(joined["probabilities"], joined["domain"], joined["reencoded"])


def answer_counts(truth: np.ndarray, leaning: np.ndarray, answered: np.ndarray) -> dict[str, Any]:
    """How many pictures were answered REAL / FAKE / UNCERTAIN and how many of each answer were right (``truth``
    and ``leaning``: True = FAKE; ``answered``: False where the service answers UNCERTAIN)."""
    real, fake = answered & ~leaning, answered & leaning
    return {"images": int(len(truth)), "answered_real": int(real.sum()), "real_right": int((real & ~truth).sum()),
            "answered_fake": int(fake.sum()), "fake_right": int((fake & truth).sum()),
            "uncertain": int((~answered).sum())}


def share(right: int, given: int) -> float | None:
    return right / given if given else None


def served(pipeline: DetectorPipeline, files: list[bytes], truth: np.ndarray) -> dict[str, Any]:
    probabilities, verdicts = pipeline.assess(files)
    return answer_counts(truth, probabilities.argmax(axis=1) == pipeline.fake_index, verdicts.answered)


def at_point(scores: CheckScores, truth: np.ndarray, point: dict[str, Any], domain_threshold: float | None,
             recheck: bool) -> dict[str, Any]:
    kept = scores.answered(point["min_confidence"], domain_threshold, point["real_domain_threshold"],
                           point["min_fake"] if recheck else None)
    return answer_counts(truth, scores.probabilities.argmax(axis=1) == 1, kept)


def evaluate(model_dir: Path, folders: list[Path], data: Path, seed: int) -> dict[str, Any]:
    pipeline = offline_pipeline(model_dir, data)
    metadata, point = pipeline.metadata, pipeline.point
    source = CifakeSource(data, metadata.class_names)
    validation = split_portions(source, metadata.domain_gate)[1] if metadata.domain_gate else []
    report: dict[str, Any] = {
        "model_version": metadata.version, "seed": seed, "min_confidence": point.min_confidence,
        "domain_threshold": point.domain_threshold, "real_domain_threshold": point.real_domain_threshold,
        "recheck_min_fake": None if point.recheck is None else point.recheck.min_fake,
        "folders": {}, "per_generator": {}, "package_photos": {}, "curve": {"points": [], "folders": {}},
    }
    scored = {}
    for folder in folders:
        images = read_outside_folder(folder)
        truth = np.array([image.truth == "FAKE" for image in images])
        files = [image.path.read_bytes() for image in images]
        report["folders"][str(folder)] = served(pipeline, files, truth)
        scored[str(folder)] = (check_scores(pipeline, files), truth)
        for generator in sorted({image.generator for image in images}, key=lambda g: (g != "camera", g)):
            chosen = [i for i, image in enumerate(images) if image.generator == generator]
            report["per_generator"][f"{folder.name}: {generator}"] = served(pipeline, [files[i] for i in chosen],
                                                                             truth[chosen])
        print(f"[outside] {folder}: {len(images)} images scored", file=sys.stderr, flush=True)
    for name, files in outside_photos(seed).items():
        report["package_photos"][name] = served(pipeline, files, np.zeros(len(files), dtype=bool))
    if validation:   # the curve: the fit's family of points, judged on the folders
        labels = np.array([sample.label for sample in validation])
        val_scores = check_scores(pipeline, [source.read_bytes(sample) for sample in validation])
        print(f"[outside] CIFAKE validation: {len(validation)} images scored", file=sys.stderr, flush=True)
        fit = metadata.metrics.get("abstention", {})
        recheck = point.recheck is not None
        for candidate in operating_points(val_scores, labels, point.domain_threshold,
                                          fit.get("target_precision", 0.995), recheck):
            report["curve"]["points"].append({**candidate, "folders": {
                name: at_point(scores, truth, candidate, point.domain_threshold, recheck)
                for name, (scores, truth) in scored.items()}})
        shipped = [c for c in report["curve"]["points"] if _is_shipped(c, report)]
        if shipped:   # the same verdict as served (the integration test checks it on the folders)
            report["cifake_validation"] = at_point(val_scores, labels == 1, shipped[0], point.domain_threshold, recheck)
    return report


def _percent(right: int, given: int) -> str:
    return f"{right / given:.0%} ({right} of {given})" if given else "no answers"


def markdown(report: dict[str, Any]) -> str:
    def row(name: str, counts: dict[str, Any]) -> str:
        answered = counts["answered_real"] + counts["answered_fake"]
        return (f"| {name} | {counts['images']} | {_percent(counts['real_right'], counts['answered_real'])} | "
                f"{_percent(counts['fake_right'], counts['answered_fake'])} | {answered / counts['images']:.0%} |")

    header = ["| set | images | a REAL answer is right | a FAKE answer is right | answered |", "|---|---:|---|---|---:|"]
    point = (f"UNCERTAIN below calibrated confidence {report['min_confidence']:.4f}"
             + (f", below domain score {report['domain_threshold']:.4f}" if report["domain_threshold"] is not None else "")
             + (f" ({report['real_domain_threshold']:.4f} for a REAL answer)" if report["real_domain_threshold"] else "")
             + (f", and where a FAKE answer's picture re-encoded like CIFAKE has P(FAKE) below "
                f"{report['recheck_min_fake']:.4f}" if report["recheck_min_fake"] is not None else ""))
    lines = [f"# Outside CIFAKE: ai_detector {report['model_version']}", "",
             "Pictures that are not CIFAKE, answered exactly as the server answers them: " + point + " (thresholds "
             "fitted on CIFAKE validation only; these folders are never used to choose anything).", "",
             "## How often an answer is right", "", *header]
    lines += [row(f"`{name}`", counts) for name, counts in report["folders"].items()]
    lines += [row(f"package photos: {name}", counts) for name, counts in report["package_photos"].items()]
    if "cifake_validation" in report:
        lines.append(row("CIFAKE validation (what the thresholds were fitted on)", report["cifake_validation"]))
    lines += ["", "Every picture not answered is UNCERTAIN, with its reason in `abstained.reason`.", "",
              "## By generator", "", *header]
    lines += [row(name, counts) for name, counts in report["per_generator"].items()]
    points = report["curve"]["points"]
    if points:
        names = list(points[0]["folders"])
        lines += ["", "## The curve: CIFAKE validation answered against answers right outside", "",
                  "Each row a point the fit chooses from: a REAL answer needs the domain score that keeps the given "
                  "share of CIFAKE's REAL validation images; the confidence threshold is the lowest with "
                  "the target precision on validation.", "",
                  "| REAL images kept | validation answered (right) | " +
                  " | ".join(f"`{Path(n).name}`: REAL right / FAKE right" for n in names) + " |",
                  "|---|---|" + "---|" * len(names)]
        for candidate in points:
            if candidate["real_keep"] not in CURVE_ROWS and not _is_shipped(candidate, report):
                continue
            cells = " | ".join(f"{_percent(c['real_right'], c['answered_real'])} / "
                               f"{_percent(c['fake_right'], c['answered_fake'])}" for c in candidate["folders"].values())
            keep = f"{candidate['real_keep']:.3f}"
            lines.append(f"| {f'**{keep} (shipped)**' if _is_shipped(candidate, report) else keep} | "
                         f"{candidate['coverage']:.1%} ({candidate['accuracy_answered']:.2%}) | {cells} |")
    lines += ["", "Plot: `outside.png`.", ""]
    return "\n".join(lines)


def _is_shipped(candidate: dict[str, Any], report: dict[str, Any]) -> bool:
    return (abs(candidate["min_confidence"] - report["min_confidence"]) < 1e-9 and
            candidate["real_domain_threshold"] == report["real_domain_threshold"])


def plot(report: dict[str, Any], path: Path) -> None:
    """How often REAL and FAKE answers are right outside, against the share of CIFAKE validation answered."""
    points = report["curve"]["points"]
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
    coverage = [100 * p["coverage"] for p in points]
    for index, name in enumerate(points[0]["folders"] if points else []):
        for axis, (given, right) in zip(axes, (("answered_real", "real_right"), ("answered_fake", "fake_right"))):
            values = [100 * share(p["folders"][name][right], p["folders"][name][given]) if p["folders"][name][given]
                      else np.nan for p in points]
            axis.plot(coverage, values, "-", color=f"C{index}", label=f"{Path(name).name}")
            shipped = [i for i, p in enumerate(points) if _is_shipped(p, report)]
            if shipped:
                axis.plot(coverage[shipped[0]], values[shipped[0]], "o", color=f"C{index}", markersize=9)
    for axis, kind in zip(axes, ("REAL", "FAKE")):
        axis.axhline(90, color="grey", linestyle=":", linewidth=1)
        axis.set(xlabel="% of CIFAKE validation answered", title=f"a {kind} answer outside CIFAKE is right (%)",
                 ylim=(0, 102))
        axis.invert_xaxis()
        axis.legend(fontsize=8, title="dot: shipped point", title_fontsize=8)
    axes[0].set_ylabel("% right")
    figure.suptitle(f"ai_detector {report['model_version']}: stricter REAL answers (left to right)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = report_parser(__doc__)
    parser.add_argument("--outside", type=Path, nargs="+", default=[OUTSIDE, OUTSIDE.with_name("outside2")],
                        help="folders of images from outside CIFAKE (evaluation only)")
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args(argv)
    report = evaluate(args.model, args.outside, args.data, args.seed)
    write_report(args.out, "outside_report", report, markdown(report))
    plot(report, args.out / "outside.png")


if __name__ == "__main__":
    main()
