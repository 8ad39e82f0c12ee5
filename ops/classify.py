"""Classify image files or folders with the running service; prints a table, writes CSV and/or JSON.

    python -m ops.classify photo.jpg folder/ --csv results.csv --json results.json
    python -m ops.classify folder/ --recursive --explain-dir heatmaps/   # + Grad-CAM overlays as PNG

The key is read from TorchServe's key file ($AI_DETECTOR_KEY_FILE, default run/key_file.json).
Each file gets one row: its label (REAL, FAKE, or UNCERTAIN with its reason and the class it leans to) and calibrated
P(FAKE), or the server's error for it (a file that is not an image is reported, never skipped). The exit
status is 1 when any file failed.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import requests

from detector.answer import UNCERTAIN
from ops.client import DetectorClient, read_keys

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass
class Result:
    """One classified file, as written to CSV/JSON."""

    path: str
    label: str | None = None
    p_real: float | None = None
    p_fake: float | None = None
    model_version: str | None = None
    leaning: str | None = None      # for UNCERTAIN: the class the model leans to
    reason: str | None = None       # for UNCERTAIN: out_of_domain, low_confidence or compression_sensitive
    domain_score: float | None = None  # where the model has a domain gate
    error: str | None = None


def collect(paths: list[Path], recursive: bool) -> list[Path]:
    """Files as given, and the image files inside given folders (sorted, so runs are repeatable)."""
    files = []
    for path in paths:
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            files += sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return files


def classify_file(client: DetectorClient, path: Path, explain_dir: Path | None) -> Result:
    """One request; a refused file becomes a Result carrying the server's message."""
    try:
        response = client.predict_response(path, endpoint="explanations" if explain_dir else "predictions")
    except requests.RequestException as exc:
        return Result(str(path), error=f"no answer: {exc}")
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    if response.status_code != 200:
        return Result(str(path), error=f"{response.status_code} {body.get('type', '')}: {body.get('message', response.text[:200])}")
    if explain_dir:
        explain_dir.mkdir(parents=True, exist_ok=True)
        (explain_dir / f"{path.stem}.gradcam.png").write_bytes(base64.b64decode(body["gradcam"]["png"]))
    probabilities = body["probabilities"]
    abstained = body.get("abstained", {})
    return Result(str(path), body["label"], probabilities["REAL"], probabilities["FAKE"], body.get("model_version"),
                  abstained.get("leaning"), abstained.get("reason"), body.get("domain_score"))


def table(results: list[Result]) -> str:
    width = max([len(r.path) for r in results] + [4])
    lines = [f"{'file':<{width}}  {'label':<9}  {'P(FAKE)':>7}  note"]
    for r in results:
        if r.error:
            lines.append(f"{r.path:<{width}}  {'-':<9}  {'-':>7}  {r.error}")
        else:
            leaning = f", {r.reason.replace('_', ' ')}, leans {r.leaning}" if r.leaning else ""
            lines.append(f"{r.path:<{width}}  {r.label:<9}  {r.p_fake:>7.4f}  model {r.model_version}{leaning}")
    counts = {label: sum(r.label == label for r in results) for label in ("REAL", "FAKE", UNCERTAIN)}
    lines.append(f"{len(results)} files: {counts['REAL']} REAL, {counts['FAKE']} FAKE, {counts[UNCERTAIN]} UNCERTAIN, "
                 f"{sum(r.error is not None for r in results)} failed")
    return "\n".join(lines)


def write_csv(results: list[Result], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[f.name for f in fields(Result)])
        writer.writeheader()
        writer.writerows(asdict(r) for r in results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="image files and/or folders")
    parser.add_argument("--recursive", action="store_true", help="descend into sub-folders")
    parser.add_argument("--csv", type=Path, help="write the results as CSV")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument("--explain-dir", type=Path, help="also save each image's Grad-CAM overlay (PNG) here")
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="inference API")
    parser.add_argument("--model", default="ai_detector")
    parser.add_argument("--key-file", type=Path, default=None)
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (the server batches them)")
    args = parser.parse_args(argv)
    try:
        files = collect(args.paths, args.recursive)
        read_keys(args.key_file)  # fail once, clearly, rather than once per file
    except FileNotFoundError as exc:
        parser.error(str(exc))
    client = DetectorClient(inference_url=args.url, key_file=args.key_file, model=args.model)
    with ThreadPoolExecutor(max(1, args.concurrency)) as pool:
        results = list(pool.map(lambda path: classify_file(client, path, args.explain_dir), files))
    print(table(results))
    if args.csv:
        write_csv(results, args.csv)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
