"""Re-uploaded copies of training images: what happens to a picture on its way to the server, computed once.

    python -m training.reupload --data ../shared/data/cifake --out runs/reupload_train.npz --copies 2

Every CIFAKE image is a 32x32 JPEG, so a network trained on them alone learns 32-px JPEG artefacts as a cue
(the robustness and outside reports show it: larger copies of the same picture lose accuracy). Each copy
here takes one way a user's upload may have gone: one or two rounds of upscaling to a random side
(48-1024 px, log-uniform) with a random filter, sometimes a mild blur at that size, and saving as JPEG
(quality 60-95, 4:2:0 or 4:4:4), WebP (quality 60-95) or PNG; then it is decoded and aligned back to the
network's input exactly as the server does (``detector.preprocessing.align_image``). Training swaps a
share of its images for one of their copies (``reupload_probability``, ``reupload_bank``).

Encoding large images is slow, so the copies are made once, in parallel (``--workers``), and stored as
uint8 arrays keyed by image (``keys``): a GPU run then pays nothing for them. A run whose ``reupload_bank``
does not exist yet builds it first (one copy of each of its training images). Each image's copies are
drawn from its own seeded generator, so the bank is the same whatever the number of workers.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from detector.data import CifakeSource, Sample
from detector.metadata import ModelMetadata
from detector.preprocessing import FILTERS, align_image, decode_image

UPSCALE_FILTERS = ("bicubic", "lanczos", "bilinear", "nearest")
FORMATS = ("JPEG", "JPEG", "WEBP", "PNG")   # JPEG twice as often: most re-uploads are JPEGs
CHUNK = 256


def reupload(image: Image.Image, rng: np.random.Generator, size: int, filter_name: str) -> np.ndarray:
    """One random way to the server for ``image``, ending in the server's own alignment: ``size`` x ``size`` x 3."""
    current = image
    for _ in range(int(rng.integers(1, 3))):   # one upload, or a re-upload of an upload
        side = int(round(np.exp(rng.uniform(np.log(48), np.log(1024)))))
        current = current.resize((side, side), FILTERS[str(rng.choice(UPSCALE_FILTERS))])
        if rng.random() < 0.2:
            current = current.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.0))))
        fmt = str(rng.choice(FORMATS))
        buffer = io.BytesIO()
        if fmt == "JPEG":
            current.save(buffer, format=fmt, quality=int(rng.integers(60, 96)), subsampling=int(rng.choice([0, 2])))
        elif fmt == "WEBP":
            current.save(buffer, format=fmt, quality=int(rng.integers(60, 96)))
        else:
            current.save(buffer, format=fmt)
        current = decode_image(buffer.getvalue())
    return align_image(current, size, filter_name)


def _copies_of(task: tuple[int, list[bytes], int, int, int, str]) -> np.ndarray:
    """(first index, files, copies, seed, size, filter) -> copies of each file, N x copies x 3 x size x size."""
    first, files, copies, seed, size, filter_name = task
    out = np.empty((len(files), copies, 3, size, size), dtype=np.uint8)
    for offset, data in enumerate(files):
        rng = np.random.default_rng([seed, first + offset])
        image = decode_image(data)
        for copy in range(copies):
            out[offset, copy] = reupload(image, rng, size, filter_name).transpose(2, 0, 1)
    return out


def build_bank(source: CifakeSource, samples: list[Sample], copies: int, seed: int, workers: int,
               metadata: ModelMetadata = ModelMetadata()) -> np.ndarray:
    """``copies`` re-uploaded copies of every sample, aligned as ``metadata`` says; prints progress."""
    tasks = [(start, [source.read_bytes(s) for s in samples[start:start + CHUNK]], copies, seed,
              metadata.input_size, metadata.downsample_filter) for start in range(0, len(samples), CHUNK)]
    parts, done, started = [], 0, time.monotonic()
    with Pool(workers) as pool:
        for part in pool.imap(_copies_of, tasks):
            parts.append(part)
            done += len(part)
            rate = done / (time.monotonic() - started)
            print(f"[reupload] {done}/{len(samples)} images ({rate:.0f} img/s, ETA {(len(samples) - done) / rate:.0f} s)",
                  file=sys.stderr, flush=True)
    return np.concatenate(parts) if parts else np.empty((0, copies, 3, metadata.input_size, metadata.input_size), np.uint8)


def alignment(metadata: ModelMetadata) -> dict:
    """What a bank of aligned images must share with the model that trains on it."""
    return {"input_size": metadata.input_size, "downsample_filter": metadata.downsample_filter}


def check_alignment(path: Path, settings: dict, metadata: ModelMetadata) -> None:
    """Refuse a bank (its stored ``settings``) aligned otherwise than ``metadata`` needs."""
    wanted = alignment(metadata)
    if {key: settings.get(key) for key in wanted} != wanted:
        raise ValueError(f"{path} was aligned with {settings}, the model needs {wanted}: rebuild it")


def save_bank(path: Path, keys: list[str], bank: np.ndarray, settings: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, keys=np.array(keys), copies=bank, settings=np.array(json.dumps(settings)))


def write_bank(path: Path, source: CifakeSource, samples: list[Sample], copies: int, seed: int, workers: int,
               metadata: ModelMetadata = ModelMetadata()) -> None:
    """Build the bank of ``samples`` (``build_bank``) and save it at ``path`` with the settings it was made with."""
    bank = build_bank(source, samples, copies, seed, workers, metadata)
    settings = {"copies": copies, "seed": seed, **alignment(metadata)}
    save_bank(path, [s.key for s in samples], bank, settings)
    print(f"[reupload] wrote {path}: {len(samples)} images x {copies} copies ({bank.nbytes / 1e6:.0f} MB)",
          file=sys.stderr)


def load_bank(path: Path, samples: list[Sample], metadata: ModelMetadata) -> np.ndarray:
    """The copies of ``samples``, in their order; fails if the bank lacks one or was aligned differently."""
    with np.load(path) as stored:
        check_alignment(path, json.loads(str(stored["settings"])), metadata)
        row = {key: index for index, key in enumerate(stored["keys"].tolist())}
        missing = [s.key for s in samples if s.key not in row]
        if missing:
            raise ValueError(f"{path} lacks {len(missing)} of the run's images (e.g. {missing[0]}): rebuild it with "
                             f"python -m training.reupload --data <the run's data> --out {path}")
        return stored["copies"][[row[s.key] for s in samples]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cifake"))
    parser.add_argument("--split", default="train", choices=("train", "test"))
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of the split (smoke runs)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=Path("runs/reupload_train.npz"))
    args = parser.parse_args(argv)
    metadata = ModelMetadata()
    source = CifakeSource(args.data, metadata.class_names)
    write_bank(args.out, source, source.split(args.split)[:args.limit], args.copies, args.seed, args.workers, metadata)


if __name__ == "__main__":
    main()
