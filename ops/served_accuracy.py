"""Accuracy of the running service over HTTP on a CIFAKE split, beside the offline evaluation of the
same weights: what users get must be what the model card reports.

    python -m ops.served_accuracy --data ../shared/data/cifake --offline-report model/reports/test_report.json \
        --models ai_detector,ai_detector_onnx --out model/reports       # all 20,000 test images

Every image of the split (or of a seeded ``--images`` sample, the same one ``training.evaluate --limit``
picks) is sent as its original file bytes to each model, ``--concurrency`` requests in flight so that
the server batches them. The offline figure is read from ``--offline-report`` (``make evaluate``'s
test_report.json, for the full split), or computed here with the eager model on the same sample.
Writes served_accuracy.json/.md; exit status 1 when a request failed, the served model version differs
from the evaluated one, or a model's accuracy is more than ``--tolerance-pt`` from offline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from detector.answer import UNCERTAIN, forced_label
from detector.data import CifakeSource, choose_samples
from detector.metadata import ModelMetadata
from detector.paths import REPO
from ops.client import DetectorClient


def served_labels(client: DetectorClient, model: str, images: list[bytes], concurrency: int) -> dict[str, Any]:
    """Each image's forced binary answer (the class an UNCERTAIN answer leans to; None where the request
    failed), whether it was UNCERTAIN, the model versions that answered, req/s."""
    def ask(data: bytes) -> tuple[str | None, bool, str | None]:
        response = client.predict_response(data, model=model)
        if response.status_code != 200:
            return None, False, None
        body = response.json()
        return forced_label(body), body["label"] == UNCERTAIN, body.get("model_version")

    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        answers = list(pool.map(ask, images))
    seconds = time.monotonic() - started
    return {"labels": [label for label, _, _ in answers], "uncertain": [flag for _, flag, _ in answers],
            "versions": sorted({v for _, _, v in answers if v}), "requests_per_second": round(len(images) / seconds, 1)}


def compare(model: str, served: dict[str, Any], truth: np.ndarray, class_names: tuple[str, ...],
            offline: dict[str, Any], tolerance_pt: float) -> dict[str, Any]:
    """One model's row: served accuracy, offline accuracy, their gap in points, and whether it passes."""
    predicted = np.array([class_names.index(label) if label else -1 for label in served["labels"]])
    failures = int((predicted < 0).sum())
    accuracy = float((predicted == truth).mean())
    gap_pt = round(100 * (accuracy - offline["accuracy"]), 3)  # rounded: 89.9 % vs 90 % is a gap of 0.1, not 0.1000001
    coverage = 1.0 - float(np.mean(served["uncertain"]))
    coverage_gap_pt = round(100 * (coverage - offline["coverage"]), 3)
    return {"model": model, "images": len(truth), "served_accuracy": accuracy, "offline_accuracy": offline["accuracy"],
            "gap_pt": gap_pt, "served_coverage": coverage, "offline_coverage": offline["coverage"],
            "coverage_gap_pt": coverage_gap_pt, "failures": failures, "served_versions": served["versions"],
            "offline_version": offline["version"], "requests_per_second": served["requests_per_second"],
            "passed": failures == 0 and served["versions"] == [offline["version"]] and abs(gap_pt) <= tolerance_pt
            and abs(coverage_gap_pt) <= tolerance_pt}


def markdown(rows: list[dict[str, Any]], split: str, tolerance_pt: float) -> str:
    lines = [f"# Served vs offline accuracy on `{split}`", "",
             f"Each image sent over HTTP to the running TorchServe; offline: the eager model, same weights. "
             f"Accuracy of the forced binary answer (an UNCERTAIN answer counts as the class it leans to); "
             f"coverage: the share answered REAL or FAKE. Pass: no failed request, same model version, both gaps "
             f"≤ {tolerance_pt} pt.", "",
             "| model | images | served | offline | gap (pt) | coverage served / offline | failed requests | req/s | pass |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| `{r['model']}` | {r['images']} | {r['served_accuracy']:.2%} | {r['offline_accuracy']:.2%} | "
              f"{r['gap_pt']:+.2f} | {r['served_coverage']:.2%} / {r['offline_coverage']:.2%} | {r['failures']} | "
              f"{r['requests_per_second']:.1f} | {'yes' if r['passed'] else '**no**'} |"
              for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cifake",
                        help="Kaggle-layout folder, a zip, or a folder of zips")
    parser.add_argument("--split", default="test")
    parser.add_argument("--images", type=int, default=None, help="seeded sample of the split (default: all of it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-dir", type=Path, default=REPO / "model", help="the weights the server was built from")
    parser.add_argument("--offline-report", type=Path, required=True,
                        help="training.evaluate's JSON for the same images (make evaluate: the whole test split)")
    parser.add_argument("--models", default="ai_detector,ai_detector_onnx")
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="inference API")
    parser.add_argument("--key-file", type=Path, default=None)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--tolerance-pt", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=REPO / "model" / "reports")
    args = parser.parse_args(argv)
    metadata = ModelMetadata.load(args.model_dir)
    source = CifakeSource(args.data, metadata.class_names)
    samples = choose_samples(source.split(args.split), args.images, args.seed)
    report = json.loads(args.offline_report.read_text())
    sample = {"images": args.images, "seed": args.seed} if args.images else None
    if report["split"] != args.split or report.get("sample") != sample or report["full"]["count"] != len(samples):
        parser.error(f"{args.offline_report} evaluates {report['full']['count']} images of {report['split']} "
                     f"(sample {report.get('sample')}); this run sends {len(samples)} of {args.split} (sample {sample}): "
                     "evaluate the same images (python -m training.evaluate --limit N --seed S)")
    if "abstention" not in report:
        parser.error(f"{args.offline_report} predates UNCERTAIN answers: rerun `make evaluate`")
    offline = {"accuracy": report["full"]["accuracy"], "coverage": report["abstention"]["coverage"],
               "version": report["model"]["version"]}
    images = [source.read_bytes(s) for s in samples]
    truth = np.array([s.label for s in samples])
    client = DetectorClient(inference_url=args.url, key_file=args.key_file)
    rows = []
    for model in args.models.split(","):
        rows.append(compare(model, served_labels(client, model, images, args.concurrency), truth, metadata.class_names,
                            offline, args.tolerance_pt))
        print(f"[served] {rows[-1]}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "served_accuracy.json").write_text(json.dumps(
        {"split": args.split, "seed": args.seed if args.images else None, "tolerance_pt": args.tolerance_pt,
         "rows": rows}, indent=2) + "\n")
    (args.out / "served_accuracy.md").write_text(markdown(rows, args.split, args.tolerance_pt))
    print(markdown(rows, args.split, args.tolerance_pt))
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
