"""Robustness report: the model through the server's own pipeline (``detector.pipeline``: bytes -> answer)
under what real uploads do to an image, plus real photographs from outside CIFAKE.

    python -m training.robustness --model model --data ../shared/data/cifake --images 2000 --out model/reports

Conditions on a fixed, seeded sample of the official test split (``--split validation``: of the model's
own validation split, carved from train by its saved config, to compare candidates without reading test):
clean; JPEG re-encoded at quality 90/75/50; upscaled to 256/512/1024 px and saved as JPEG (a larger
copy of the same picture); Gaussian blur. Outside CIFAKE: the sample photographs that ship with scikit-image,
scikit-learn and matplotlib (whole, and random crops) and the LFW face subset of scikit-image:
all are real photographs, so every FAKE answer on them is a false positive.
Writes robustness.json, robustness.md and robustness.png (robustness_validation.* for the validation split).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageFilter  # noqa: E402

from detector.data import CifakeSource, Sample, choose_samples  # noqa: E402
from detector.pipeline import DetectorPipeline  # noqa: E402
from export.domain_gate import offline_pipeline  # noqa: E402
from detector.preprocessing import decode_image  # noqa: E402
from training.config import saved_config  # noqa: E402
from training.report_cli import report_parser, write_report  # noqa: E402
from training.train import training_and_validation  # noqa: E402

SPLIT_NAMES = {"test": "official test images", "validation": "validation images (the model's own split, from train)"}

Transform = Callable[[Image.Image], bytes]

SKIMAGE_PHOTOS = ("astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "grass.png",
                  "gravel.png", "hubble_deep_field.jpg", "moon.png", "motorcycle_left.png", "motorcycle_right.png",
                  "retina.jpg", "rocket.jpg", "page.png")


def _encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _jpeg(quality: int) -> Transform:
    return lambda image: _encode(image, "JPEG", quality=quality)


def _upscaled_jpeg(side: int, resample: Image.Resampling = Image.Resampling.BICUBIC) -> Transform:
    return lambda image: _encode(image.resize((side, side), resample), "JPEG", quality=90)


def _blurred(radius: float) -> Transform:
    return lambda image: _encode(image.filter(ImageFilter.GaussianBlur(radius)), "PNG")


UPLOAD_SIDES = (256, 512, 1024, 2048)   # the sides a user's larger copy of a picture is tried at
CONDITIONS: dict[str, Transform | None] = {
    "clean (original file)": None,
    "JPEG quality 90": _jpeg(90),
    "JPEG quality 75": _jpeg(75),
    "JPEG quality 50": _jpeg(50),
    **{f"upscaled to {side} px, JPEG 90": _upscaled_jpeg(side) for side in UPLOAD_SIDES},   # bicubic
    **{f"upscaled to {side} px (Lanczos), JPEG 90": _upscaled_jpeg(side, Image.Resampling.LANCZOS)
       for side in UPLOAD_SIDES},
    "Gaussian blur σ=0.5 px": _blurred(0.5),
    "Gaussian blur σ=1 px": _blurred(1.0),
}


def split_samples(model_dir: Path, source: CifakeSource, split: str) -> list[Sample]:
    """The official test split, or the validation split the model in ``model_dir`` was trained beside."""
    if split == "test":
        return source.split("test")
    return training_and_validation(source, saved_config(model_dir))[1]


def cifake_conditions(pipeline: DetectorPipeline, source: CifakeSource, samples: list[Sample], count: int,
                      seed: int) -> list[dict[str, Any]]:
    chosen = choose_samples(samples, count, seed)
    originals = [source.read_bytes(s) for s in chosen]
    labels = np.array([s.label for s in chosen])
    decoded = [decode_image(b) for b in originals]
    rows = []
    for name, transform in CONDITIONS.items():
        files = originals if transform is None else [transform(image) for image in decoded]
        probabilities, verdicts = pipeline.assess(files)
        predicted = probabilities.argmax(axis=1)
        kept = verdicts.answered
        rows.append({"condition": name, "images": len(files), "accuracy": float((predicted == labels).mean()),
                     "real_recall": float((predicted[labels == 0] == 0).mean()),
                     "fake_recall": float((predicted[labels == 1] == 1).mean()),
                     "coverage": float(kept.mean()), "served_accuracy": float((kept & (predicted == labels)).mean())})
        print(f"[robustness] {name}: accuracy {rows[-1]['accuracy']:.2%}", file=sys.stderr, flush=True)
    return rows


def outside_photos(seed: int, crops_per_photo: int = 8) -> dict[str, list[bytes]]:
    """Real photographs bundled with scikit-image, scikit-learn and matplotlib, as encoded files."""
    import matplotlib as mpl
    import skimage
    import sklearn

    paths = [Path(skimage.__file__).parent / "data" / n for n in SKIMAGE_PHOTOS]
    paths += [Path(sklearn.__file__).parent / "datasets" / "images" / n for n in ("china.jpg", "flower.jpg")]
    paths.append(Path(mpl.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    whole = [p.read_bytes() for p in paths]
    rng = np.random.default_rng(seed)
    crops = []
    for data in whole:
        image = decode_image(data)
        for _ in range(crops_per_photo):
            side = int(rng.integers(64, min(image.size) + 1)) if min(image.size) > 64 else min(image.size)
            left, top = int(rng.integers(0, image.width - side + 1)), int(rng.integers(0, image.height - side + 1))
            crops.append(_encode(image.crop((left, top, left + side, top + side)), "JPEG", quality=90))
    faces = np.load(Path(skimage.__file__).parent / "data" / "lfw_subset.npy")[:100]  # the 100 face crops
    lfw = [_encode(Image.fromarray((face * 255).astype(np.uint8)), "PNG") for face in faces]
    return {f"{len(whole)} library sample photos (whole)": whole,
            f"{len(crops)} random square crops of them (64 px to full, JPEG 90)": crops,
            f"{len(lfw)} LFW face crops (scikit-image, 25×25 grey)": lfw}


def outside_rows(pipeline: DetectorPipeline, seed: int) -> list[dict[str, Any]]:
    rows = []
    for name, files in outside_photos(seed).items():
        fake = pipeline.probabilities(files)[:, 1]
        rows.append({"set": name, "images": len(files), "false_positive_rate": float((fake >= 0.5).mean()),
                     "mean_fake_probability": float(fake.mean())})
        print(f"[robustness] {name}: FPR {rows[-1]['false_positive_rate']:.1%}", file=sys.stderr, flush=True)
    return rows


def markdown(report: dict[str, Any]) -> str:
    clean = report["cifake"][0]["accuracy"]
    lines = [f"# Robustness of ai_detector {report['model_version']} (align {report['align_size']})", "",
             f"Fixed sample of {report['cifake'][0]['images']} {SPLIT_NAMES[report['split']]} "
             f"(seed {report['seed']}), each "
             "changed as below, then decoded and aligned exactly as the server does. *Accuracy*: the forced binary "
             "answer. *As served*: right answers among all images, an UNCERTAIN answer counting as a miss "
             f"(confidence threshold {report['min_confidence']:.4f}"
             + (f", domain threshold {report['domain_threshold']:.4f}" if report.get("domain_threshold") is not None
                else "") + (", FAKE answers rechecked after re-encoding like CIFAKE" if report.get("jpeg_recheck")
                            else "") + "); *answered*: the share not UNCERTAIN.", "",
             "| condition | accuracy | Δ vs clean | REAL recall | FAKE recall | as served | Δ vs clean | answered |",
             "|---|---|---|---|---|---|---|---|"]
    served_clean = report["cifake"][0]["served_accuracy"]
    lines += [f"| {r['condition']} | {r['accuracy']:.2%} | {100 * (r['accuracy'] - clean):+.2f} pt | "
              f"{r['real_recall']:.2%} | {r['fake_recall']:.2%} | {r['served_accuracy']:.2%} | "
              f"{100 * (r['served_accuracy'] - served_clean):+.2f} pt | {r['coverage']:.2%} |" for r in report["cifake"]]
    lines += ["", "Real photographs from outside CIFAKE (every FAKE answer is a false positive):", "",
              "| set | images | false-positive rate | mean P(FAKE) |", "|---|---|---|---|"]
    lines += [f"| {r['set']} | {r['images']} | {r['false_positive_rate']:.1%} | {r['mean_fake_probability']:.3f} |"
              for r in report["outside"]]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    rows = report["cifake"]
    figure, axis = plt.subplots(figsize=(8, 4.5))
    axis.barh([r["condition"] for r in rows][::-1], [100 * r["accuracy"] for r in rows][::-1], color="#4c72b0")
    axis.axvline(50, color="grey", linestyle=":", label="chance")
    axis.set_xlim(40, 100)
    axis.set_xlabel(f"accuracy on the fixed {report['split']} sample (%)")
    axis.set_title(f"ai_detector {report['model_version']}: robustness to common image changes")
    axis.legend(loc="lower left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = report_parser(__doc__)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--split", choices=tuple(SPLIT_NAMES), default="test")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pipeline = offline_pipeline(args.model, args.data)
    metadata = pipeline.metadata
    source = CifakeSource(args.data, metadata.class_names)
    report = {"model_version": metadata.version, "align_size": metadata.align_size, "split": args.split,
              "seed": args.seed,
              "min_confidence": pipeline.point.min_confidence, "domain_threshold": pipeline.point.domain_threshold,
              "jpeg_recheck": pipeline.point.recheck is not None,
              "cifake": cifake_conditions(pipeline, source, split_samples(args.model, source, args.split), args.images,
                                          args.seed),
              "outside": outside_rows(pipeline, args.seed)}
    stem = "robustness" if args.split == "test" else f"robustness_{args.split}"
    write_report(args.out, stem, report, markdown(report))
    plot(report, args.out / f"{stem}.png")


if __name__ == "__main__":
    main()
