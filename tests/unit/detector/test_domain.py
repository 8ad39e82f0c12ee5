"""The domain gate without CIFAKE or EfficientNet: a tiny ONNX extractor (mean colour) stands in for the
ImageNet features, so the served path (files in the model folder -> pipeline -> answers and metrics) runs
as a worker runs it."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from detector.answer import UNCERTAIN, OperatingPoint
from detector.backends import OnnxBackend
from detector.domain import (EXTRACTOR_NAME, PROBE_NAME, REFERENCE_NAME, DomainScorer, GateCheckError,
                             kth_similarity)
from detector.metadata import DomainGate, ModelMetadata
from detector.model import WEIGHTS_FILENAME
from detector.pipeline import DetectorPipeline
from export.convert import export_onnx
from handlers.metrics import batch_metrics
from training.metrics import answered, fit_min_confidence
from tests.conftest import MODEL_DIR, encode

SPEC = DomainGate(neighbour=2, threshold=0.9)


class MeanColour(torch.nn.Module):
    """uint8 (N,3,s,s) -> unit-length mean colour: reddish pictures are alike, blue ones are far from them."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(images.float().mean(dim=(2, 3)) + 1.0, dim=1)


def plain(colour: tuple[int, int, int], side: int = 40) -> bytes:
    from PIL import Image

    return encode(Image.new("RGB", (side, side), colour), "PNG")


@pytest.fixture(scope="module")
def gated_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped weights with a colour gate whose references are reddish pictures (and no JPEG recheck: the
    gate alone)."""
    folder = tmp_path_factory.mktemp("gated")
    shutil.copy2(MODEL_DIR / WEIGHTS_FILENAME, folder / WEIGHTS_FILENAME)
    metadata = dataclasses.replace(ModelMetadata.load(MODEL_DIR), domain_gate=SPEC, jpeg_recheck=None)
    metadata.save(folder)
    export_onnx(MeanColour(), folder / EXTRACTOR_NAME, metadata.input_size, output_name="features")
    reds = np.array([[200 + i, 40, 30] for i in range(5)], dtype=np.float32)
    np.save(folder / REFERENCE_NAME, MeanColour()(torch.from_numpy(reds)[:, :, None, None]).numpy().astype(np.float16))
    gate = DomainScorer(OnnxBackend(folder / EXTRACTOR_NAME, torch.device("cpu"), 1), np.load(folder / REFERENCE_NAME),
                      SPEC)
    gate.save_probe(folder, np.random.default_rng(1).integers(0, 256, (4, 3, 32, 32), dtype=np.uint8))
    return folder


def test_kth_similarity_reads_the_kth_nearest_reference() -> None:
    reference = np.eye(4, dtype=np.float32)                       # four orthogonal unit vectors
    query = np.array([[1.0, 0.0, 0.0, 0.0], [0.6, 0.8, 0.0, 0.0]], dtype=np.float32)
    assert np.allclose(kth_similarity(query, reference, k=1), [1.0, 0.8])
    assert np.allclose(kth_similarity(query, reference, k=2), [0.0, 0.6])


def test_the_record_round_trips_through_metadata_and_refuses_unknown_keys() -> None:
    metadata = ModelMetadata(domain_gate=SPEC)
    assert ModelMetadata.from_dict(json.loads(metadata.to_json())) == metadata
    assert ModelMetadata().domain_gate is None
    with pytest.raises(ValueError, match="unknown domain_gate keys"):
        ModelMetadata.from_dict({"domain_gate": {**dataclasses.asdict(SPEC), "radius": 3}})
    assert SPEC.build_key() == dataclasses.replace(SPEC, threshold=0.1, keep_validation=0.5).build_key()
    assert SPEC.build_key() != dataclasses.replace(SPEC, precision="fp32").build_key()
    with pytest.raises(ValueError, match="precision"):
        ModelMetadata.from_dict({"domain_gate": {**dataclasses.asdict(SPEC), "precision": "int4"}})


def test_confidence_threshold_is_fitted_on_what_the_gate_lets_through() -> None:
    probabilities = np.stack([np.linspace(0.55, 1.0, 10), 1 - np.linspace(0.55, 1.0, 10)], axis=1)
    in_domain = np.ones(10, dtype=bool)
    in_domain[-1] = False                                     # the most confident one is out of domain
    threshold = fit_min_confidence(probabilities, 0.8, in_domain)
    assert answered(probabilities, threshold, in_domain).mean() == 0.8
    assert fit_min_confidence(probabilities, 0.8) > threshold
    in_domain[:3] = False                                      # the gate alone turns away 40 %
    assert fit_min_confidence(probabilities, 0.8, in_domain) == 0.0


def test_a_gated_pipeline_answers_out_of_domain_pictures_uncertain(gated_model: Path) -> None:
    pipeline = DetectorPipeline.load(gated_model)
    result = pipeline.run([{"body": plain((210, 45, 35))}, {"body": plain((20, 40, 230))}, {"body": b"junk"}])
    red, blue, junk = result.responses
    assert red["domain_score"] >= 0.9 and red.get("abstained", {}).get("reason") != "out_of_domain"
    assert blue["label"] == UNCERTAIN and blue["abstained"]["reason"] == "out_of_domain"
    assert blue["abstained"]["domain_score"] == blue["domain_score"] < 0.9
    assert "domain_score" not in junk and junk["code"] == 415
    samples = {(m.name, m.dimensions): m.value for m in batch_metrics(result)}
    assert samples[("Abstentions", (("Reason", "out_of_domain"),))] >= 1
    assert ("DomainGateMs", ()) in samples and result.domain_ms is not None
    probabilities, verdicts = pipeline.assess([plain((210, 45, 35)), plain((20, 40, 230), side=1024)])
    assert verdicts.reasons[1] == "out_of_domain" and verdicts.reasons[0] != "out_of_domain"
    assert probabilities.shape == (2, 2)


def test_the_decision_ignores_the_file_size(gated_model: Path) -> None:
    pipeline = DetectorPipeline.load(gated_model)
    scores = [pipeline.run([{"body": plain((20, 40, 230), side)}]).responses[0]["domain_score"] for side in (32, 1024)]
    assert scores[0] == pytest.approx(scores[1], abs=1e-6)


def test_the_gate_can_be_turned_off_and_then_costs_nothing(gated_model: Path) -> None:
    pipeline = DetectorPipeline.load(gated_model, point=OperatingPoint(ModelMetadata.load(gated_model).min_confidence))
    result = pipeline.run([{"body": plain((20, 40, 230))}])
    assert pipeline.domain is None and result.domain_ms is None and "domain_score" not in result.responses[0]
    assert result.responses[0].get("abstained", {}).get("reason") != "out_of_domain"
    assert pipeline.assess([plain((20, 40, 230))])[1].domain_scores is None


def test_a_gated_model_without_its_files_refuses_to_load(gated_model: Path, tmp_path: Path) -> None:
    for name in (WEIGHTS_FILENAME, "metadata.json"):
        shutil.copy2(gated_model / name, tmp_path / name)
    with pytest.raises(FileNotFoundError, match="domain_extractor.onnx"):
        DetectorPipeline.load(tmp_path)


def test_a_gate_whose_probe_scores_differently_here_refuses_to_load(gated_model: Path, tmp_path: Path) -> None:
    for path in gated_model.iterdir():
        shutil.copy2(path, tmp_path / path.name)
    with np.load(tmp_path / PROBE_NAME) as probe:
        images, scores = probe["images"], probe["scores"]
    assert np.allclose(DomainScorer.load(tmp_path, SPEC).scores(images), scores)
    np.savez(tmp_path / PROBE_NAME, images=images, scores=scores + 0.01)   # what other kernels would give
    with pytest.raises(GateCheckError, match="probe"):
        DomainScorer.load(tmp_path, SPEC)


def test_gate_scores_batches_as_one(gated_model: Path) -> None:
    gate = DomainScorer.load(gated_model, SPEC)
    images = np.random.default_rng(0).integers(0, 256, (9, 3, 32, 32), dtype=np.uint8)
    assert np.allclose(gate.scores(images), np.concatenate([gate.scores(images[:4]), gate.scores(images[4:])]))
    assert gate.scores(images[:0]).shape == (0,)


def test_no_gate_metrics_without_a_gate(gated_model: Path) -> None:
    pipeline = DetectorPipeline.load(gated_model, point=OperatingPoint())
    names = {m.name for m in batch_metrics(pipeline.run([{"body": plain((20, 40, 230))}]))}
    assert "DomainGateMs" not in names and "Abstentions" not in names
