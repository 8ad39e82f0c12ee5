"""Benchmark of the decode -> align path on large photos, with and without JPEG DCT-domain scaling
(Pillow ``draft``), and what that scaling does to accuracy.

    python -m loadtest.bench_preprocess --out loadtest/results/preprocess

Prints and writes (``preprocess.json``/``preprocess.md``): the median time to turn a 12 MP JPEG
(4000×3000) and a 2 MP JPEG into the 32×32 model input, with draft (what the server does) and
without; and the model's accuracy on a fixed sample of test images upscaled to 1024 px JPEGs,
aligned with and without draft. Single-threaded, as one worker's decode runs.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from detector.data import CifakeSource, choose_samples
from detector.hardware import cpu_info, cpu_line
from detector.model import load_model, predict_logits
from detector.paths import REPO
from detector.preprocessing import align_image, decode_image

# name -> (width, height, JPEG quality): the same photo-like content at a phone camera's 12 MP and three
# qualities, since entropy decoding (which no DCT scaling skips) grows with the file's size, and at 2 MP
LARGE_INPUTS = {"12 MP JPEG (4000x3000), quality 90": (4000, 3000, 90),
                "12 MP JPEG (4000x3000), quality 80": (4000, 3000, 80),
                "12 MP JPEG (4000x3000), quality 70": (4000, 3000, 70),
                "2 MP JPEG (1600x1200), quality 90": (1600, 1200, 90)}


def photo_jpeg(width: int, height: int, seed: int = 0, quality: int = 90) -> bytes:
    """A photo-like JPEG (smooth structure plus sensor-like noise) of the given size and quality."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(height // 64 + 2, width // 64 + 2, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    noisy = np.clip(image + rng.normal(0, 6, size=image.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def aligned(data: bytes, size: int, filter_name: str, draft: bool) -> np.ndarray:
    return align_image(decode_image(data, draft_size=size if draft else None), size, filter_name)


def median_ms(work: Callable[[], object], repeats: int) -> float:
    work()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def nvjpeg_ms(data: bytes, size: int, repeats: int) -> float | None:
    """Median ms for nvJPEG (GPU Huffman decoding, torchvision) + an area resize to size×size on the GPU,
    result back on the host; None without a GPU. What a GPU worker could do with the large-photo case."""
    if not torch.cuda.is_available():
        return None
    from torchvision.io import decode_jpeg

    encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)

    def work() -> torch.Tensor:
        image = decode_jpeg(encoded, device="cuda")
        return torch.nn.functional.interpolate(image[None].float(), size=(size, size), mode="area").cpu()

    return round(median_ms(work, repeats), 2)


def draft_accuracy(model_dir: Path, data: Path, count: int, side: int, seed: int) -> dict[str, float]:
    """Accuracy on ``count`` test images upscaled to ``side`` px JPEGs, aligned with and without draft."""
    model, metadata = load_model(model_dir)
    source = CifakeSource(data, metadata.class_names)
    chosen = choose_samples(source.split("test"), count, seed)
    labels = np.array([s.label for s in chosen])
    files = []
    for sample in chosen:
        buffer = io.BytesIO()
        decode_image(source.read_bytes(sample)).resize((side, side), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
        files.append(buffer.getvalue())
    result = {}
    for draft in (True, False):
        batch = np.stack([aligned(f, metadata.input_size, metadata.downsample_filter, draft).transpose(2, 0, 1) for f in files])
        predicted = predict_logits(model, torch.from_numpy(batch), batch_size=128).argmax(1).numpy()
        result["with draft" if draft else "without draft"] = float((predicted == labels).mean())
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "model")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cifake")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=REPO / "loadtest" / "results" / "preprocess")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    metadata = load_model(args.model)[1]
    size, filter_name = metadata.input_size, metadata.downsample_filter
    timings = {}
    for name, (width, height, quality) in LARGE_INPUTS.items():
        data = photo_jpeg(width, height, quality=quality)
        timings[name] = {"bytes": len(data),
                         **{label: round(median_ms(lambda: aligned(data, size, filter_name, draft), args.repeats), 2)
                            for label, draft in (("with draft ms", True), ("without draft ms", False))},
                         "decode only with draft ms": round(median_ms(lambda: decode_image(data, draft_size=size),
                                                                      args.repeats), 2),
                         "nvJPEG + GPU resize ms": nvjpeg_ms(data, size, args.repeats)}
        print(f"[bench] {name}: {timings[name]}", flush=True)
    accuracy = draft_accuracy(args.model, args.data, args.images, 1024, seed=2024)
    print(f"[bench] accuracy on {args.images} test images upscaled to 1024 px: {accuracy}", flush=True)
    report = {"cpu": cpu_info(), "timings_ms_median": timings, "upscaled_1024_accuracy": accuracy, "images": args.images,
              "threads": 1, "repeats": args.repeats}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "preprocess.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"CPU: {cpu_line(report['cpu'])}, 1 thread", "", "| input | file size | decode + align, with draft (server) | JPEG decode alone, at 1/8 scale | "
             "without draft |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {t['bytes'] / 1e6:.1f} MB | {t['with draft ms']:.1f} ms | {t['decode only with draft ms']:.1f} ms "
              f"| {t['without draft ms']:.1f} ms |" for name, t in timings.items()]
    if torch.cuda.is_available():
        lines += ["", f"On {torch.cuda.get_device_name()}, nvJPEG decode + area resize to {size}×{size}: "
                  + ", ".join(f"{name} {t['nvJPEG + GPU resize ms']:.1f} ms" for name, t in timings.items()) + "."]
    lines += ["", f"Accuracy on {args.images} test images upscaled to 1024 px JPEG: "
              f"{accuracy['with draft']:.2%} with draft, {accuracy['without draft']:.2%} without "
              f"({100 * (accuracy['with draft'] - accuracy['without draft']):+.2f} pt)."]
    (args.out / "preprocess.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
