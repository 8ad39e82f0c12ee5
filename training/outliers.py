"""Outlier exposure: photographs that are not CIFAR-10-like, for a loss that makes the detector unsure of them.

    python -m training.outliers --photos /usr/share/wallpapers --out runs/outliers.npz --crops 40

The detector answers FAKE with high confidence for many real photos from outside CIFAKE (the outside report):
it has only ever seen CIFAR-10 thumbnails and their Stable Diffusion look-alikes, so a downsampled portrait or
landscape is simply off its map. Outlier exposure (Hendrycks et al., 2019) adds a term that pulls its answer
on such pictures towards 50/50, which the confidence gate then turns into UNCERTAIN.

The bank holds random square crops (a log-uniform share of the shorter side, from 64 px to all of it) of
every photo found under ``--photos``, each saved as a JPEG at a random quality, then decoded and aligned to
the network's input exactly as the server does (``detector.preprocessing.align_image``). Each photo's crops
come from its own seeded generator, so the bank is the same whatever the order the folder lists.

Never build it from ``../shared/data/outside`` or from the package photos the outside report evaluates on
(``training.robustness.outside_photos``): those measure what this loss is for.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np

from detector.metadata import ModelMetadata
from detector.preprocessing import InvalidImageError, align_image, decode_image
from training.reupload import alignment, check_alignment

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
MIN_CROP = 64
CROPS_PER_PHOTO = 40


def photo_files(folder: Path) -> list[Path]:
    """Every photo under ``folder`` (recursively), in a fixed order."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)


def random_crops(data: bytes, count: int, rng: np.random.Generator, size: int, filter_name: str) -> np.ndarray:
    """``count`` random square crops of one encoded photo, each re-saved as JPEG and aligned: count x 3 x size x size."""
    image = decode_image(data)
    short = min(image.size)
    out = np.empty((count, 3, size, size), dtype=np.uint8)
    for index in range(count):
        side = short if short <= MIN_CROP else int(round(np.exp(rng.uniform(np.log(MIN_CROP), np.log(short)))))
        left, top = int(rng.integers(0, image.width - side + 1)), int(rng.integers(0, image.height - side + 1))
        buffer = io.BytesIO()
        image.crop((left, top, left + side, top + side)).save(buffer, format="JPEG", quality=int(rng.integers(70, 96)))
        out[index] = align_image(decode_image(buffer.getvalue()), size, filter_name).transpose(2, 0, 1)
    return out


def build_bank(files: list[Path], crops: int, seed: int, metadata: ModelMetadata) -> np.ndarray:
    """``crops`` aligned crops of every readable photo in ``files``; unreadable files are skipped with a note."""
    parts = []
    for number, path in enumerate(files, 1):
        digest = int.from_bytes(hashlib.sha256(path.name.encode()).digest()[:8], "little")
        try:
            parts.append(random_crops(path.read_bytes(), crops, np.random.default_rng([seed, digest]),
                                      metadata.input_size, metadata.downsample_filter))
        except InvalidImageError as error:
            print(f"[outliers] skipped {path}: {error}", file=sys.stderr)
        if number % 10 == 0 or number == len(files):
            print(f"[outliers] {number}/{len(files)} photos", file=sys.stderr, flush=True)
    if not parts:
        raise ValueError("no readable photo to build an outlier bank from")
    return np.concatenate(parts)


def write_bank(path: Path, photos: Path, crops: int, seed: int, metadata: ModelMetadata) -> None:
    """Build the bank of the photos under ``photos`` and save it at ``path`` with how it was made."""
    files = photo_files(photos)
    bank = build_bank(files, crops, seed, metadata)
    settings = {"photos": str(photos), "files": len(files), "crops": crops, "seed": seed, **alignment(metadata)}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=bank, settings=np.array(json.dumps(settings)))
    print(f"[outliers] wrote {path}: {len(bank)} crops of {len(files)} photos", file=sys.stderr)


def load_bank(path: Path, metadata: ModelMetadata) -> np.ndarray:
    """The bank's aligned crops; fails if they were aligned differently from what the model needs."""
    with np.load(path) as stored:
        check_alignment(path, json.loads(str(stored["settings"])), metadata)
        return stored["images"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, required=True, help="folder of photos (searched recursively)")
    parser.add_argument("--crops", type=int, default=CROPS_PER_PHOTO, help="crops per photo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/outliers.npz"))
    args = parser.parse_args(argv)
    write_bank(args.out, args.photos, args.crops, args.seed, ModelMetadata())


if __name__ == "__main__":
    main()
