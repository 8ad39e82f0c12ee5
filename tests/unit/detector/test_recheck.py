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

from detector.answer import COMPRESSION_SENSITIVE, UNCERTAIN, answer
from detector.metadata import ModelMetadata
from detector.pipeline import DetectorPipeline, HandlerSettings
from detector.recheck import JpegRecheck, passed_checks, survives
from tests.conftest import encode, photo

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
RECHECK = JpegRecheck.read(cifake_like_jpeg())


def test_the_tables_are_read_from_a_jpeg_and_travel_in_metadata(tmp_path: Path) -> None:
    assert RECHECK.subsampling == "4:2:0" and len(RECHECK.quantization) == 2
    assert JpegRecheck.read(cifake_like_jpeg(quality=40)) != RECHECK          # other tables, another recheck
    metadata = dataclasses.replace(ModelMetadata(), jpeg_recheck=RECHECK.to_dict())
    metadata.save(tmp_path)
    assert JpegRecheck.of(ModelMetadata.load(tmp_path)) == RECHECK
    assert JpegRecheck.of(ModelMetadata()) is None
    with pytest.raises(ValueError, match="JPEG training file"):
        JpegRecheck.read(encode(Image.new("RGB", (32, 32)), "PNG"))
    with pytest.raises(ValueError, match="64 values"):
        JpegRecheck(((1, 2, 3),))
    grey = io.BytesIO()
    Image.new("L", (32, 32), 128).save(grey, "JPEG")
    with pytest.raises(ValueError, match="subsampling"):
        JpegRecheck.read(grey.getvalue())


def test_reencoding_barely_moves_a_file_encoded_with_the_same_tables_and_smooths_noise() -> None:
    original = np.asarray(photo(32, 32)).transpose(2, 0, 1)[None]
    decoded = RECHECK.reencode(original)                                 # what a CIFAKE-like file holds
    again = RECHECK.reencode(decoded)
    assert again.shape == decoded.shape and again.dtype == np.uint8
    assert np.abs(again.astype(int) - decoded).mean() < 0.5 * np.abs(decoded.astype(int) - original).mean()
    assert roughness(RECHECK.reencode(noisy(0)[None]))[0] < ROUGH < roughness(noisy(0)[None])[0]


def test_a_fake_answer_that_leans_real_once_reencoded_is_uncertain() -> None:
    fake = np.array([0.1, 0.9])
    assert answer(fake, NAMES, 0.7, fake_after_reencoding=0.95) == {"label": "FAKE"}
    given = answer(fake, NAMES, 0.7, fake_after_reencoding=0.2)
    assert given["label"] == UNCERTAIN and given["abstained"]["reason"] == COMPRESSION_SENSITIVE
    assert given["abstained"]["fake_after_reencoding"] == 0.2 and given["abstained"]["leaning"] == "FAKE"
    assert answer(np.array([0.9, 0.1]), NAMES, 0.7, fake_after_reencoding=0.9) == {"label": "REAL"}   # REAL stays
    assert answer(np.array([0.35, 0.65]), NAMES, 0.7, fake_after_reencoding=0.2)["abstained"]["reason"] == \
        "low_confidence"                                                     # the confidence gate comes first


def test_only_answerable_fake_leaning_pictures_are_rechecked() -> None:
    images = np.stack([noisy(seed) for seed in range(4)])
    probabilities = np.array([[0.1, 0.9], [0.9, 0.1], [0.4, 0.6], [0.05, 0.95]])   # FAKE, REAL, unsure, FAKE
    in_domain = np.array([True, True, True, False])
    seen: list[int] = []

    def p_fake(batch: np.ndarray) -> np.ndarray:
        seen.append(len(batch))
        return np.full(len(batch), 0.1)                                   # every recheck leans REAL

    passed = passed_checks(RECHECK, images, probabilities, 1, p_fake, in_domain, min_confidence=0.7)
    assert seen == [1] and passed.tolist() == [False, True, True, False]
    assert passed_checks(None, images, probabilities, 1, p_fake, in_domain).tolist() == in_domain.tolist()
    assert survives(np.array([np.nan, 0.49, 0.5])).tolist() == [True, False, True]


@pytest.fixture()
def rechecking_pipeline(tmp_path: Path) -> DetectorPipeline:
    def build(settings: HandlerSettings = HandlerSettings(), min_confidence: float = 0.6) -> DetectorPipeline:
        metadata = dataclasses.replace(ModelMetadata(min_confidence=min_confidence), jpeg_recheck=RECHECK.to_dict())
        return DetectorPipeline(tmp_path, metadata, ArtefactKeyedNetwork(), settings, "1.0")
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
    samples = {(m.name, m.dimensions): m.value for m in result.metrics}
    assert samples[("Abstentions", (("Reason", COMPRESSION_SENSITIVE),))] == 1 and ("RecheckMs", ()) in samples
    assert pipeline.assess([smooth, rough])[1].tolist() == [True, False]


def test_the_recheck_can_be_turned_off(rechecking_pipeline) -> None:
    pipeline = rechecking_pipeline(HandlerSettings.from_yaml({"jpeg_recheck": "off"}))
    rough = encode(Image.fromarray(noisy(1).transpose(1, 2, 0)), "PNG")
    result = pipeline.run([{"body": rough}])
    assert result.responses[0]["label"] == "FAKE" and result.recheck_ms is None and pipeline.backend.batches == [1]
    assert pipeline.assess([rough])[1] is None
    with pytest.raises(ValueError, match="jpeg_recheck"):
        HandlerSettings.from_yaml({"jpeg_recheck": "sometimes"})


def test_reports_can_recheck_pictures_below_the_threshold(rechecking_pipeline) -> None:
    """The server leaves an unsure FAKE-leaning picture unrechecked (it is UNCERTAIN anyway); a report that
    sweeps lower thresholds asks for the recheck's verdict on it too."""
    pipeline = rechecking_pipeline(min_confidence=0.999999)
    rough = encode(Image.fromarray(noisy(1).transpose(1, 2, 0)), "PNG")
    assert pipeline.run([{"body": rough}]).responses[0]["abstained"]["reason"] == "low_confidence"
    assert pipeline.assess([rough])[1].tolist() == [True]
    assert pipeline.assess([rough], recheck_all=True)[1].tolist() == [False]
