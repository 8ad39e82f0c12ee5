"""The robustness report's conditions change the image as named; the package photos decode."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from detector.data import CifakeSource
from detector.preprocessing import decode_image
from tests.conftest import encode, photo
from training import robustness
from training.config import TrainConfig, merge
from training.train import training_and_validation


def test_conditions_change_the_image_as_named() -> None:
    image = photo(32, 32, seed=1)
    assert robustness.UPLOAD_SIDES == (256, 512, 1024, 2048)
    for side in robustness.UPLOAD_SIDES:
        bicubic = robustness.CONDITIONS[f"upscaled to {side} px, JPEG 90"](image)
        lanczos = robustness.CONDITIONS[f"upscaled to {side} px (Lanczos), JPEG 90"](image)
        for data in (bicubic, lanczos):
            assert Image.open(io.BytesIO(data)).size == (side, side) and Image.open(io.BytesIO(data)).format == "JPEG"
        assert bicubic != lanczos
    low, high = robustness.CONDITIONS["JPEG quality 50"](image), robustness.CONDITIONS["JPEG quality 90"](image)
    assert len(low) < len(high)
    blurred = decode_image(robustness.CONDITIONS["Gaussian blur σ=1 px"](image))
    assert blurred.size == (32, 32) and not np.array_equal(np.asarray(blurred), np.asarray(image))


def test_outside_photos_are_real_decodable_images() -> None:
    sets = robustness.outside_photos(seed=0, crops_per_photo=2)
    counts = [len(files) for files in sets.values()]
    assert counts[0] >= 15 and counts[1] == 2 * counts[0] and counts[2] == 100
    assert all(min(decode_image(f).size) >= 25 for files in sets.values() for f in files)


def test_the_validation_split_is_the_models_own_and_never_test(tmp_path: Path) -> None:
    for split, count in (("train", 20), ("test", 4)):
        for label in ("REAL", "FAKE"):
            (tmp_path / split / label).mkdir(parents=True)
            for index in range(count):
                (tmp_path / split / label / f"{index}.jpg").write_bytes(encode(photo(32, 32, seed=index), "JPEG"))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"seed": 3, "val_fraction": 0.25}))
    source = CifakeSource(tmp_path)
    validation = robustness.split_samples(run, source, "validation")
    expected = training_and_validation(source, merge(TrainConfig(), {"seed": 3, "val_fraction": 0.25}))[1]
    assert [s.key for s in validation] == [s.key for s in expected] and len(validation) == 10
    assert all(s.key.startswith("train/") for s in validation)
    assert [s.key for s in robustness.split_samples(run, source, "test")] == [s.key for s in source.split("test")]
    (run / "config.json").write_text(json.dumps({"seed": 4, "val_fraction": 0.25}))
    assert [s.key for s in robustness.split_samples(run, source, "validation")] != [s.key for s in expected]
