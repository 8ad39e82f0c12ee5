"""The shipped weights must reach the reference-model target, 98 %, on a fixed sample of 2,000 official
test images, and the int8 variant that make build ships may lose at most 0.2 pt of that and change at most
1 % of the labels, on whatever CPU runs the test (AVX2 without VNNI included).

Regression guards for real-world inputs, as served (UNCERTAIN counted): the "Real-world inputs" issue's
targets where the shipped model meets them (outside photos and generated images), floors at its measured level
where it does not yet (re-uploads; MODEL_CARD.md says how far off)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from detector.answer import OperatingPoint, decide
from detector.backends import batched_outputs, load_backend
from detector.data import CifakeSource, choose_samples, load_split
from detector.hardware import cpu_line
from detector.model import calibrated_probabilities, load_model, predict_logits
from detector.pipeline import DetectorPipeline
from detector.preprocessing import decode_image
from export.domain_gate import gate_folder, offline_gate, offline_pipeline
from export.export import INT8_NAME
from handlers.settings import HandlerSettings
from tests.conftest import MODEL_DIR, OUTSIDE
from training import outside
from training.metrics import eager_p_fake, selective_figures
from training.robustness import CONDITIONS


SAMPLE_SIZE, SEED, TARGET = 2000, 2024, 0.98


@pytest.fixture(scope="module")
def sample(cifake_dir: Path):
    model, metadata = load_model(MODEL_DIR)
    source = CifakeSource(cifake_dir / "test.zip", metadata.class_names)
    chosen = choose_samples(source.split("test"), SAMPLE_SIZE, SEED)
    loaded = load_split(source, chosen, metadata.input_size, metadata.downsample_filter)
    logits = predict_logits(model, torch.from_numpy(loaded.images), batch_size=100)
    return loaded, logits.argmax(1).numpy(), calibrated_probabilities(logits, metadata.temperature).numpy()


def test_shipped_model_accuracy_on_2000_official_test_images(sample) -> None:
    loaded, predictions, _ = sample
    accuracy = float((predictions == loaded.labels).mean())
    print(f"shipped model: {accuracy:.2%} on {SAMPLE_SIZE} official test images (seed {SEED})")
    assert 0.45 < loaded.labels.mean() < 0.55  # both classes well represented
    assert accuracy >= TARGET


def test_shipped_int8_variant_loses_at_most_0_2_points(sample, artifacts_dir: Path) -> None:
    loaded, predictions, _ = sample
    fp32 = float((predictions == loaded.labels).mean())
    backend = load_backend(artifacts_dir / INT8_NAME, torch.device("cpu"), torch.get_num_threads())
    logits = batched_outputs(backend, loaded.images, 100)
    int8 = float((logits.argmax(1) == loaded.labels).mean())
    agreement = float((logits.argmax(1) == predictions).mean())
    print(f"int8: {int8:.2%}, fp32: {fp32:.2%}, label agreement {agreement:.2%} on {SAMPLE_SIZE} official test "
          f"images (seed {SEED}), {cpu_line()}")
    assert fp32 - int8 <= 0.002 and agreement >= 0.99


def test_shipped_model_abstains_on_few_test_images_and_is_right_on_the_others(sample, cifake_dir: Path) -> None:
    loaded, _, probabilities = sample
    model, metadata = load_model(MODEL_DIR)
    gate = offline_gate(metadata, cifake_dir)      # every check, as served
    scores = None if gate is None else gate.scores(loaded.images)
    verdicts = decide(probabilities, metadata.class_names, OperatingPoint.of(metadata), scores, loaded.images,
                      eager_p_fake(model, metadata, 100))
    served = selective_figures(probabilities, loaded.labels, metadata.min_confidence, verdicts.answered)
    print(f"as served: {served['coverage']:.2%} answered, {served['accuracy_answered']:.2%} of them right")
    # the promise on the full split: >= 90 % answered, >= 99.3 % of them right (0.4.5: model/reports/test_report.md);
    # a 2,000-image sample moves coverage by about 0.7 pt and precision by 0.2 pt (one standard deviation)
    assert served["coverage"] >= 0.885 and served["accuracy_answered"] >= 0.99


@pytest.fixture(scope="module")
def served_pipeline(cifake_dir: Path) -> DetectorPipeline:
    return offline_pipeline(MODEL_DIR, cifake_dir)


@pytest.mark.parametrize(("folder", "real_floor", "fake_floor"), [
    (OUTSIDE, 0.85, 0.9),                               # 0.4.5: REAL 30 of 34 right, FAKE 10 of 10
    (OUTSIDE.with_name("outside2"), 0.6, 0.9),          # 0.4.5: REAL 6 of 9 right, FAKE 13 of 13
])
def test_outside_cifake_answers_stay_as_right_as_measured(served_pipeline: DetectorPipeline, folder: Path,
                                                          real_floor: float, fake_floor: float) -> None:
    """How often each kind of answer is right on the evaluation folders, as served: FAKE at the issue's 90 %
    target, REAL at its measured level (below the target on outside2; MODEL_CARD.md says how far)."""
    if not folder.exists():
        pytest.skip(f"{folder} absent")
    images = outside.read_outside_folder(folder)
    truth = np.array([image.truth == "FAKE" for image in images])
    counts = outside.served(served_pipeline, [image.path.read_bytes() for image in images], truth)
    print(f"{folder.name}: {counts}")
    assert counts["answered_real"] >= 5 and counts["answered_fake"] >= 5   # the figures rest on some answers
    assert counts["real_right"] >= real_floor * counts["answered_real"]
    assert counts["fake_right"] >= fake_floor * counts["answered_fake"]


def test_upscaled_reuploads_are_rarely_answered_wrongly(served_pipeline: DetectorPipeline, cifake_dir: Path) -> None:
    """Larger JPEG copies of test images, as served. Smoothing moves pictures towards REAL and lowers the
    confidence, so at 0.4.5's stricter point more copies are UNCERTAIN (on this 300-image sample: answered right
    90.7 % of originals, 85.3 % / 78.7 % of 256 / 512 px copies), but an answered copy must stay as rarely wrong
    as an original is (the promise of an answer); a collapse like 0.1.0's (10-15 pt wrong) fails here."""
    pipeline = served_pipeline
    source = CifakeSource(cifake_dir / "test.zip", pipeline.metadata.class_names)
    chosen = choose_samples(source.split("test"), 300, SEED)
    labels = np.array([sample.label for sample in chosen])
    originals = [source.read_bytes(sample) for sample in chosen]
    decoded = [decode_image(data) for data in originals]

    def served(files: list[bytes]) -> tuple[float, float]:
        probabilities, verdicts = pipeline.assess(files)
        right = probabilities.argmax(1) == labels
        return float((verdicts.answered & right).mean()), float((verdicts.answered & ~right).mean())

    clean_right, clean_wrong = served(originals)
    for side in (256, 512, 1024):
        right, wrong = served([CONDITIONS[f"upscaled to {side} px, JPEG 90"](image) for image in decoded])
        print(f"as served: originals {clean_right:.2%} right / {clean_wrong:.2%} wrong; {side} px copies "
              f"{right:.2%} right / {wrong:.2%} wrong")
        assert wrong <= clean_wrong + 0.02 and right >= clean_right - 0.2, side


def test_readme_recheck_example_is_answered_as_documented(served_pipeline: DetectorPipeline, cifake_dir: Path) -> None:
    """README's example: a camera photo the network alone calls FAKE at 81 %. As shipped it is below the operating
    confidence; with model 0.4.4's settings (handlers/model-config.yaml) the JPEG recheck turns it away, since it
    leans REAL once re-encoded like CIFAKE; with the recheck off too, it is answered FAKE."""
    import skimage

    photo = (Path(skimage.__file__).parent / "data" / "motorcycle_left.png").read_bytes()
    response = served_pipeline.run([{"body": photo}]).responses[0]
    assert response["label"] == "UNCERTAIN" and response["abstained"]["reason"] == "low_confidence"
    old = HandlerSettings.from_yaml({"min_confidence": 0.7028865218162537, "real_domain_threshold": "off",
                                     "recheck_min_fake": 0.5}, served_pipeline.metadata, environ={}).point

    def answered_at(point: OperatingPoint) -> dict:
        pipeline = DetectorPipeline(served_pipeline.model_dir, served_pipeline.metadata, served_pipeline.backend,
                                    point, "example", domain_files=gate_folder(served_pipeline.metadata, cifake_dir))
        return pipeline.run([{"body": photo}]).responses[0]

    rechecked = answered_at(old)
    assert rechecked["abstained"]["reason"] == "compression_sensitive"
    assert rechecked["abstained"]["leaning"] == "FAKE" and rechecked["abstained"]["fake_after_reencoding"] < 0.1
    assert answered_at(OperatingPoint(old.min_confidence))["label"] == "FAKE"   # what `jpeg_recheck: off` answers