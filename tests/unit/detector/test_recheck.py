"""The JPEG recheck without CIFAKE: tables read from a JPEG made here, and a stand-in network that, like the
shipped one, calls a picture FAKE when it lacks JPEG artefacts (here: when it is noisy, which a JPEG round trip
smooths away)."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detector.answer import COMPRESSION_SENSITIVE, UNCERTAIN, OperatingPoint
from detector.metadata import JpegRecheck, ModelMetadata
from detector.pipeline import DetectorPipeline
from detector.recheck import reencode
from handlers.metrics import batch_metrics
from tests.conftest import encode, photo
from training.abstention import read_encoding

NAMES = ("REAL", "FAKE")


def cifake_like_jpeg(quality: int = 75, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality, subsampling=2)
    return buffer.getvalue()


def noisy(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (3, 32, 32), dtype=np.uint8)


def roughness(images: np.ndarray) -> np.ndarray:
    """Mean absolute difference between horizontal neighbours: high for noise, low once JPEG-smoothed."""
    return np.abs(np.diff(images.astype(np.float32), axis=3)).mean(axis=(1, 2, 3))


class ArtefactKeyedNetwork:
    """Logits that say FAKE for rough pictures (no JPEG smoothing yet), REAL for smooth ones."""

    name = "stand-in"

    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(len(batch))
        fake = (roughness(batch) - ROUGH) / 5.0
        return np.stack([-fake, fake], axis=1).astype(np.float32)


ROUGH = float(roughness(noisy(0)[None])[0] * 0.8)   # noise is above it, its JPEG round trip below (checked below)
RECHECK = read_encoding(cifake_like_jpeg())


def test_the_tables_are_read_from_a_jpeg_and_travel_in_metadata(tmp_path: Path) -> None:
    assert RECHECK.subsampling == "4:2:0" and len(RECHECK.quantization) == 2
    assert read_encoding(cifake_like_jpeg(quality=40)) != RECHECK          # other tables, another recheck
    metadata = dataclasses.replace(ModelMetadata(), jpeg_recheck=RECHECK)
    metadata.save(tmp_path)
    assert ModelMetadata.load(tmp_path).jpeg_recheck == RECHECK
    assert ModelMetadata().jpeg_recheck is None
    with pytest.raises(ValueError, match="JPEG training file"):
        read_encoding(encode(Image.new("RGB", (32, 32)), "PNG"))
    with pytest.raises(ValueError, match="64 values"):
        JpegRecheck(((1, 2, 3),))
    grey = io.BytesIO()
    Image.new("L", (32, 32), 128).save(grey, "JPEG")
    with pytest.raises(ValueError, match="subsampling"):
        read_encoding(grey.getvalue())


def test_reencoding_barely_moves_a_file_encoded_with_the_same_tables_and_smooths_noise() -> None:
    original = np.asarray(photo(32, 32)).transpose(2, 0, 1)[None]
    decoded = reencode(RECHECK, original)                                # what a CIFAKE-like file holds
    again = reencode(RECHECK, decoded)
    assert again.shape == decoded.shape and again.dtype == np.uint8
    assert np.abs(again.astype(int) - decoded).mean() < 0.5 * np.abs(decoded.astype(int) - original).mean()
    assert roughness(reencode(RECHECK, noisy(0)[None]))[0] < ROUGH < roughness(noisy(0)[None])[0]


@pytest.fixture()
def rechecking_pipeline(tmp_path: Path) -> DetectorPipeline:
    def build(recheck: bool = True, min_confidence: float = 0.6) -> DetectorPipeline:
        metadata = dataclasses.replace(ModelMetadata(min_confidence=min_confidence), jpeg_recheck=RECHECK)
        point = OperatingPoint(min_confidence, None, RECHECK if recheck else None)
        return DetectorPipeline(tmp_path, metadata, ArtefactKeyedNetwork(), point, "1.0")
    return build


def test_the_served_answer_names_the_recheck_and_its_cost(rechecking_pipeline) -> None:
    pipeline = rechecking_pipeline()
    smooth = encode(Image.new("RGB", (64, 64), (120, 90, 60)), "PNG")
    rough = encode(Image.fromarray(noisy(1).transpose(1, 2, 0)), "PNG")
    result = pipeline.run([{"body": smooth}, {"body": rough}])
    assert result.responses[0]["label"] == "REAL"
    assert result.responses[1]["label"] == UNCERTAIN
    assert result.responses[1]["abstained"]["reason"] == COMPRESSION_SENSITIVE
    assert pipeline.backend.batches == [2, 1]                             # one more pass, for the FAKE one only
    samples = {(m.name, m.dimensions): m.value for m in batch_metrics(result)}
    assert samples[("Abstentions", (("Reason", COMPRESSION_SENSITIVE),))] == 1 and ("RecheckMs", ()) in samples
    assert pipeline.assess([smooth, rough])[1].answered.tolist() == [True, False]


def test_the_recheck_can_be_turned_off(rechecking_pipeline) -> None:
    pipeline = rechecking_pipeline(recheck=False)
    rough = encode(Image.fromarray(noisy(1).transpose(1, 2, 0)), "PNG")
    result = pipeline.run([{"body": rough}])
    assert result.responses[0]["label"] == "FAKE" and result.recheck_ms is None and pipeline.backend.batches == [1]
    assert pipeline.assess([rough])[1].fake_after_reencoding is None


def test_reports_can_recheck_pictures_below_the_threshold(rechecking_pipeline) -> None:
    """The server leaves an unsure FAKE-leaning picture unrechecked (it is UNCERTAIN anyway); a report that
    sweeps lower thresholds asks for the recheck's verdict on it too."""
    pipeline = rechecking_pipeline(min_confidence=0.999999)
    rough = encode(Image.fromarray(noisy(1).transpose(1, 2, 0)), "PNG")
    assert pipeline.run([{"body": rough}]).responses[0]["abstained"]["reason"] == "low_confidence"
    assert pipeline.assess([rough])[1].reasons == ("low_confidence",)
    every = dataclasses.replace(pipeline.point, min_confidence=0.0)
    assert pipeline.assess([rough], point=every)[1].reasons == (COMPRESSION_SENSITIVE,)
