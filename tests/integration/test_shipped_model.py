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
from export.domain_gate import offline_gate, offline_pipeline
from export.export import INT8_NAME
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
    # 0.4.4 on the full split: 97.50 % answered, 98.97 % right (0.4.1 without the domain gate: 99.20 %)
    assert served["coverage"] >= 0.97 and served["accuracy_answered"] >= 0.985


@pytest.fixture(scope="module")
def served_pipeline(cifake_dir: Path) -> DetectorPipeline:
    return offline_pipeline(MODEL_DIR, cifake_dir)


@pytest.mark.parametrize(("truth", "wrong_label", "ceiling"), [
    ("REAL", "answered_fake", 0.05),   # the target; 4 of 91 (4.4 %) with 0.4.4's JPEG recheck (12 without, 18 with
                                       # the confidence gate alone); every verdict is ≥ 0.003 from its threshold
    ("FAKE", "answered_real", 0.15),   # the target; 6 of 48 (12.5 %) with the domain gate (9 without)
])
def test_outside_cifake_wrong_answers_stay_within_the_targets(served_pipeline: DetectorPipeline, truth: str,
                                                                    wrong_label: str, ceiling: float) -> None:
    if not OUTSIDE.exists():
        pytest.skip(f"{OUTSIDE} absent")
    files = [image.path.read_bytes() for image in outside.read_outside_folder(OUTSIDE) if image.truth == truth]
    probabilities, verdicts = served_pipeline.assess(files)
    counts = outside.answer_counts(np.full(len(files), truth == "FAKE"), probabilities,
                                   served_pipeline.point.min_confidence, verdicts.answered)
    print(f"outside {truth}: {counts}")
    assert counts[wrong_label] <= ceiling * counts["images"]


def test_upscaled_reuploads_lose_at_most_today_s_share_as_served(served_pipeline: DetectorPipeline,
                                                                 cifake_dir: Path) -> None:
    """Larger JPEG copies of test images, answered as served (UNCERTAIN counts as a miss), against the
    originals: 0.4.1 loses 2.0-3.5 pt on 2,000 images (model/reports/robustness.md) and 4.3-6.0 pt on this
    300-image sample; the issue asks ≤ 0.3 pt. The floor catches a collapse like 0.1.0's (10-15 pt)."""
    pipeline = served_pipeline
    source = CifakeSource(cifake_dir / "test.zip", pipeline.metadata.class_names)
    chosen = choose_samples(source.split("test"), 300, SEED)
    labels = np.array([sample.label for sample in chosen])
    originals = [source.read_bytes(sample) for sample in chosen]
    decoded = [decode_image(data) for data in originals]

    def served_accuracy(files: list[bytes]) -> float:
        probabilities, verdicts = pipeline.assess(files)
        return float((verdicts.answered & (probabilities.argmax(1) == labels)).mean())

    clean = served_accuracy(originals)
    for side in (256, 512, 1024):
        upscaled = served_accuracy([CONDITIONS[f"upscaled to {side} px, JPEG 90"](image) for image in decoded])
        print(f"as served: clean {clean:.2%}, upscaled to {side} px {upscaled:.2%}")
        assert clean - upscaled <= 0.08, side


def test_readme_recheck_example_is_answered_as_documented(served_pipeline: DetectorPipeline) -> None:
    """README's compression_sensitive example: a camera photo the network alone calls FAKE, which leans REAL once
    re-encoded like CIFAKE."""
    import skimage

    photo = (Path(skimage.__file__).parent / "data" / "motorcycle_left.png").read_bytes()
    response = served_pipeline.run([{"body": photo}]).responses[0]
    assert response["label"] == "UNCERTAIN" and response["abstained"]["reason"] == "compression_sensitive"
    assert response["abstained"]["leaning"] == "FAKE" and response["abstained"]["fake_after_reencoding"] < 0.1
    unchecked = DetectorPipeline(served_pipeline.model_dir, served_pipeline.metadata, served_pipeline.backend,
                                 OperatingPoint(served_pipeline.point.min_confidence), "unchecked")
    assert unchecked.run([{"body": photo}]).responses[0]["label"] == "FAKE"   # what `jpeg_recheck: off` answers
