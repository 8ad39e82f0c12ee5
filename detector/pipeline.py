"""The request pipeline: one definition of what happens to a batch of requests, shared by the TorchServe
handler, the bare-model benchmark and the offline reports.

    decode -> align -> batch -> backend (+ domain gate, JPEG recheck) -> calibrated answer -> second opinion -> explanations -> metrics

* ``extract_image_bytes``  request dict -> image bytes (raw body, multipart ``data``, base64 JSON, KServe instance)
* ``decode_batch``         requests -> one uint8 batch (N,3,32,32) + per-request errors
* backend                  batch -> logits (``detector.backends``; the archive picks the runtime)
* domain gate              batch -> domain score per image (``detector.domain``), where the model has a gate
* JPEG recheck             the pictures about to be answered FAKE -> P(FAKE) once re-encoded like CIFAKE
                           (``detector.recheck``), where the model has the recheck
* ``answers``              logits + domain scores + recheck -> calibrated JSON per request (REAL, FAKE or
                           UNCERTAIN with its reason: out_of_domain, low_confidence or compression_sensitive),
                           errors left in their slots
* ``add_spectral_opinion`` the frequency score beside the CNN's answer (never replacing it)
* ``add_explanations``     Grad-CAM for the requests that asked for one (eager model, same input)
* ``batch_metrics``        the batch's own metrics (size, stage times, labels, input errors)

Each stage is a small function that tests call alone; ``DetectorPipeline`` composes them. A bad input fails
only its own request (a 4xx JSON body in its slot); the rest of the batch is answered.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detector.answer import answer, answered
from detector.backends import Backend, EagerBackend, load_backend, select_device, self_checked
from detector.domain import DomainGate, DomainGateSpec
from detector.gradcam import explanation, grad_cam
from detector.metadata import ModelMetadata
from detector.model import AlignedClassifier, calibrated_probabilities, load_model
from detector.preprocessing import DecodeLimits, InvalidImageError, load_aligned
from detector.recheck import JpegRecheck, passed_checks
from detector.spectral import SPECTRAL_FILENAME, SpectralScore

logger = logging.getLogger(__name__)

JSON_IMAGE_KEYS = ("image", "data", "b64")
REASON_PHRASES = {400: "Bad Request", 413: "Payload Too Large", 415: "Unsupported Media Type"}
THREADS_ENV = "AI_DETECTOR_INTRA_OP_THREADS"


@dataclass(frozen=True)
class HandlerSettings:
    """Serving options from the archive's model-config.yaml ``handler`` section (defaults: offline use)."""

    limits: DecodeLimits = DecodeLimits()
    threads: int = 0                      # intra-op threads; 0 leaves the runtimes' own default
    min_confidence: float | None = None   # None: the model's own (metadata.json); 0: never UNCERTAIN
    domain_threshold: float | None = None  # None: the model's own gate (if it has one); DOMAIN_OFF: no gate
    jpeg_recheck: bool = True             # the model's JPEG recheck (if it has one); False: never rechecked

    def abstain_below(self, metadata: ModelMetadata) -> float:
        """The confidence below which this model answers UNCERTAIN."""
        return metadata.min_confidence if self.min_confidence is None else self.min_confidence

    def out_of_domain_below(self, metadata: ModelMetadata) -> float | None:
        """The domain score below which this model answers UNCERTAIN (out_of_domain); None: no gate runs."""
        spec = DomainGateSpec.of(metadata)
        if spec is None or self.domain_threshold == DOMAIN_OFF:
            return None
        return spec.threshold if self.domain_threshold is None else self.domain_threshold

    def recheck(self, metadata: ModelMetadata) -> JpegRecheck | None:
        """The JPEG recheck this model runs; None: none."""
        return JpegRecheck.of(metadata) if self.jpeg_recheck else None

    @classmethod
    def from_yaml(cls, section: dict[str, Any] | None, environ: dict[str, str] | None = None) -> "HandlerSettings":
        """``$AI_DETECTOR_INTRA_OP_THREADS`` (set where TorchServe starts) overrides the archive's
        ``intra_op_threads``, so operators size workers x threads to the cores without rebuilding."""
        section = dict(section or {})
        environ = os.environ if environ is None else environ
        archive_threads = int(section.pop("intra_op_threads", 0))
        threads = int(environ.get(THREADS_ENV) or archive_threads) or (os.cpu_count() or 1)
        min_confidence = parse_min_confidence(section.pop("min_confidence", "model"))
        domain_threshold = parse_domain_threshold(section.pop("domain_threshold", "model"))
        jpeg_recheck = parse_jpeg_recheck(section.pop("jpeg_recheck", "model"))
        known = {"max_image_bytes": "max_bytes", "max_image_pixels": "max_pixels", "max_image_side": "max_side"}
        unknown = set(section) - set(known)
        if unknown:
            raise ValueError(f"unknown handler settings: {sorted(unknown)}")
        return cls(limits=DecodeLimits(**{known[k]: int(v) for k, v in section.items()}), threads=threads,
                   min_confidence=min_confidence, domain_threshold=domain_threshold, jpeg_recheck=jpeg_recheck)


def parse_min_confidence(value: Any) -> float | None:
    """``model`` (the threshold fitted with the weights), ``off`` (always REAL or FAKE; YAML may read it as
    false) or a confidence in [0.5, 1)."""
    if value == "model":
        return None
    if value in ("off", False):
        return 0.0
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0.5 <= value < 1.0:
        return float(value)
    raise ValueError(f"handler min_confidence must be 'model', 'off' or a number in [0.5, 1), not {value!r}")


DOMAIN_OFF = float("-inf")


def parse_domain_threshold(value: Any) -> float | None:
    """``model`` (the gate fitted with the weights, if any), ``off`` (no domain gate: it is not even computed)
    or a domain score in [-1, 1] (cosine similarity; higher turns more pictures away)."""
    if value == "model":
        return None
    if value in ("off", False):
        return DOMAIN_OFF
    if isinstance(value, (int, float)) and not isinstance(value, bool) and -1.0 <= value <= 1.0:
        return float(value)
    raise ValueError(f"handler domain_threshold must be 'model', 'off' or a number in [-1, 1], not {value!r}")


def parse_jpeg_recheck(value: Any) -> bool:
    """``model`` (the recheck shipped with the weights, if any) or ``off`` (FAKE answers are not rechecked: half
    the forward passes of FAKE-leaning traffic saved, camera photos called FAKE more often)."""
    if value == "model":
        return True
    if value in ("off", False):
        return False
    raise ValueError(f"handler jpeg_recheck must be 'model' or 'off', not {value!r}")


@dataclass
class PreparedBatch:
    """Decoded images of the valid requests and the errors of the others, by request position."""

    images: np.ndarray
    positions: list[int]
    errors: dict[int, InvalidImageError] = field(default_factory=dict)


def _decode_base64_json(payload: Any) -> bytes:
    if not isinstance(payload, dict):
        raise InvalidImageError(f"JSON body must be an object with one of the keys {list(JSON_IMAGE_KEYS)}", kind="BadJson")
    encoded = next((payload[k] for k in JSON_IMAGE_KEYS if k in payload), None)
    if not isinstance(encoded, str):
        raise InvalidImageError(f"JSON body needs a base64 string under one of {list(JSON_IMAGE_KEYS)}", kind="BadJson")
    if encoded.startswith("data:") and "," in encoded:  # data URL
        encoded = encoded.split(",", 1)[1]
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImageError(f"invalid base64: {exc}", kind="BadBase64") from exc


def extract_image_bytes(request: dict[str, Any]) -> bytes:
    """Image bytes from a raw body, a multipart field ``data``, a base64 JSON body or a KServe instance."""
    payload = request.get("data", request.get("body"))
    if payload is None:
        raise InvalidImageError(
            "no image found: send raw bytes, a multipart field named 'data', or JSON {\"image\": \"<base64>\"}",
            kind="MissingInput",
        )
    if isinstance(payload, (bytes, bytearray)):
        if payload[:1] == b"{":  # JSON that TorchServe did not decode (wrong content type or decoding off)
            try:
                return _decode_base64_json(json.loads(payload))
            except (UnicodeDecodeError, json.JSONDecodeError):
                pass  # not JSON after all: let the image decoder judge the bytes
        return bytes(payload)
    if isinstance(payload, str):  # a KServe v1 instance {"data": "<base64>"}, or a text body
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidImageError("text body: send the image bytes, or JSON with base64", status=415,
                                    kind="UnsupportedFormat") from None
    return _decode_base64_json(payload)


def decode_batch(requests: list[dict[str, Any]], metadata: ModelMetadata, limits: DecodeLimits) -> PreparedBatch:
    """Decode and align every request; failures are recorded, never raised."""
    images, positions, errors = [], [], {}
    for position, request in enumerate(requests):
        try:
            data = extract_image_bytes(request)
            images.append(load_aligned(data, metadata.input_size, metadata.downsample_filter, limits).transpose(2, 0, 1))
            positions.append(position)
        except InvalidImageError as exc:
            errors[position] = exc
    size = metadata.input_size
    batch = np.stack(images) if images else np.empty((0, 3, size, size), dtype=np.uint8)
    return PreparedBatch(images=np.ascontiguousarray(batch), positions=positions, errors=errors)


def error_body(error: InvalidImageError) -> dict[str, Any]:
    return {"code": error.status, "type": error.kind, "message": str(error)}


def answers(probabilities: np.ndarray, prepared: PreparedBatch, metadata: ModelMetadata, backend_name: str,
            model_version: str, min_confidence: float, domain_scores: np.ndarray | None = None,
            domain_threshold: float | None = None,
            fake_after_reencoding: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One JSON-serialisable response per request, in request order, naming the version that answered:
    REAL or FAKE, or UNCERTAIN (with the reason) below ``domain_threshold`` or ``min_confidence`` or where a
    FAKE answer's JPEG recheck (``fake_after_reencoding``, NaN where not rechecked) leans REAL; both calibrated
    ``probabilities`` (``DetectorPipeline.calibrated``) always, and the domain score wherever the gate ran."""
    slots: dict[int, dict[str, Any]] = {pos: error_body(err) for pos, err in prepared.errors.items()}
    for row, position in enumerate(prepared.positions):
        score = None if domain_scores is None else float(domain_scores[row])
        recheck = None if fake_after_reencoding is None else float(fake_after_reencoding[row])
        given = answer(probabilities[row], metadata.class_names, min_confidence, score, domain_threshold, recheck)
        slots[position] = {
            "label": given["label"],
            "probabilities": {name: float(probabilities[row, i]) for i, name in enumerate(metadata.class_names)},
            "model_version": model_version,
            "backend": backend_name,
            **({"domain_score": round(score, 6)} if score is not None else {}),
            **({"abstained": given["abstained"]} if "abstained" in given else {}),
        }
    return [slots[i] for i in range(len(slots))]


def add_spectral_opinion(responses: list[dict[str, Any]], prepared: PreparedBatch, score: SpectralScore) -> None:
    """Attach the frequency score's P(FAKE) and its measured test accuracy beside the CNN's answer.
    It is a second opinion only: the label stays the CNN's."""
    if not prepared.positions:
        return
    p_fake = score.p_fake(prepared.images.transpose(0, 2, 3, 1))
    for row, position in enumerate(prepared.positions):
        responses[position]["spectral"] = {"p_fake": float(p_fake[row]),
                                           "test_accuracy": score.metrics.get("test_accuracy")}


def add_explanations(responses: list[dict[str, Any]], prepared: PreparedBatch, logits: np.ndarray,
                     model: AlignedClassifier, wanted: Collection[int]) -> None:
    """Attach a Grad-CAM map of the predicted class to the answers of the positions in ``wanted``.

    The map is computed on the served weights (the eager model built from the archive's
    safetensors, since the TorchScript/ONNX graphs expose no intermediate layers) and the very
    uint8 input the backend classified; the label it explains is the backend's.
    """
    rows = [row for row, position in enumerate(prepared.positions) if position in wanted]
    if not rows:
        return
    device = next(model.parameters()).device
    images = torch.from_numpy(prepared.images[rows]).to(device)
    cams = grad_cam(model, images, np.asarray(logits)[rows].argmax(axis=1).tolist())
    for row, cam in zip(rows, cams):
        responses[prepared.positions[row]]["gradcam"] = explanation(prepared.images[row].transpose(1, 2, 0), cam,
                                                                    model.architecture)


@dataclass(frozen=True)
class MetricSample:
    """One value for TorchServe's metrics (Prometheus on the metrics port); ModelName/Level are added by TorchServe."""

    name: str
    value: float
    unit: str
    kind: str                                      # "counter" or "histogram"
    dimensions: tuple[tuple[str, str], ...] = ()


def batch_metrics(prepared: PreparedBatch, responses: list[dict[str, Any]], preprocess_ms: float,
                  inference_ms: float, domain_ms: float | None = None,
                  recheck_ms: float | None = None) -> list[MetricSample]:
    """What operators watch per batch: its size, stage times (the domain gate's and the JPEG recheck's where
    they ran), answers per label, abstentions per reason, input errors per type."""
    samples = [MetricSample("BatchSize", len(responses), "count", "histogram"),
               MetricSample("PreprocessMs", preprocess_ms, "ms", "histogram")]
    if prepared.positions:  # no inference ran for a batch of only bad requests
        samples.append(MetricSample("InferenceMs", inference_ms, "ms", "histogram"))
        if domain_ms is not None:
            samples.append(MetricSample("DomainGateMs", domain_ms, "ms", "histogram"))
        if recheck_ms is not None:
            samples.append(MetricSample("RecheckMs", recheck_ms, "ms", "histogram"))
    labels = Counter(r["label"] for r in responses if "label" in r)
    samples += [MetricSample("Predictions", n, "count", "counter", (("Label", label),)) for label, n in sorted(labels.items())]
    reasons = Counter(r["abstained"]["reason"] for r in responses if "abstained" in r)
    samples += [MetricSample("Abstentions", n, "count", "counter", (("Reason", reason),))
                for reason, n in sorted(reasons.items())]
    errors = Counter(error.kind for error in prepared.errors.values())
    samples += [MetricSample("InputErrors", n, "count", "counter", (("ErrorType", kind),)) for kind, n in sorted(errors.items())]
    return samples


@dataclass
class PipelineResult:
    """A batch's answers (in request order; errors in their slots) and what it cost."""

    responses: list[dict[str, Any]]
    errors: dict[int, InvalidImageError]
    decode_ms: float
    backend_ms: float
    domain_ms: float | None     # None: no domain gate ran
    metrics: list[MetricSample]
    recheck_ms: float | None = None   # None: no JPEG recheck ran


class DetectorPipeline:
    """The stages above wired to one model: what a TorchServe worker runs per batch, and what the benchmark
    and the offline reports run too, so that their figures describe the served path."""

    def __init__(self, model_dir: Path, metadata: ModelMetadata, backend: Backend, settings: HandlerSettings,
                 model_version: str, device: torch.device = torch.device("cpu"),
                 domain_files: Path | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.metadata = metadata
        self.backend = backend
        self.settings = settings
        self.model_version = model_version
        self.device = device
        self.min_confidence = settings.abstain_below(metadata)
        self.domain_threshold = settings.out_of_domain_below(metadata)   # None: no gate, so nothing to load
        self.domain = (None if self.domain_threshold is None else
                       DomainGate.load(domain_files or self.model_dir, DomainGateSpec.of(metadata), settings.threads))
        self.recheck = settings.recheck(metadata)
        self.fake_index = metadata.class_names.index("FAKE")
        has_spectral = (self.model_dir / SPECTRAL_FILENAME).exists()   # optional: models fitted without one
        self.spectral = SpectralScore.load(self.model_dir) if has_spectral else None
        self._explainer: AlignedClassifier | None = None

    @classmethod
    def load(cls, model_dir: Path, artifact: str | None = None, settings: HandlerSettings = HandlerSettings(),
             gpu_id: int | None = None, model_version: str | None = None,
             domain_files: Path | None = None) -> "DetectorPipeline":
        """As a worker builds it: ``artifact`` (a file in ``model_dir``, the archive's serialized file) on the
        assigned device, self-checked against the export's reference answers. Without an artifact: the eager
        fp32 weights (offline reports on a model directory, nothing exported). The domain gate's files come
        from ``model_dir`` (an archive) or ``domain_files`` (``export.domain_gate.gate_folder``, offline)."""
        model_dir = Path(model_dir)
        if settings.threads:
            torch.set_num_threads(settings.threads)
        device = select_device(gpu_id)
        if artifact is None:
            model, metadata = load_model(model_dir, device)
            backend: Backend = EagerBackend(model)
        else:
            metadata = ModelMetadata.load(model_dir)
            backend = self_checked(load_backend(model_dir / artifact, device, settings.threads), model_dir, metadata,
                                   device)
        pipeline = cls(model_dir, metadata, backend, settings, model_version or metadata.version, device, domain_files)
        gate = ("no domain gate" if pipeline.domain_threshold is None
                else f"out of domain below {pipeline.domain_threshold:.4f}")
        gate += ", FAKE answers rechecked after JPEG re-encoding" if pipeline.recheck else ", no JPEG recheck"
        logger.info("ai_detector %s (weights %s): %s on %s, %d threads, UNCERTAIN below confidence %.4f, %s",
                    pipeline.model_version, metadata.version, backend.name, device, torch.get_num_threads(),
                    pipeline.min_confidence, gate)
        return pipeline

    def decode(self, requests: list[dict[str, Any]]) -> PreparedBatch:
        return decode_batch(requests, self.metadata, self.settings.limits)

    def infer(self, prepared: PreparedBatch) -> np.ndarray:
        if not prepared.positions:
            return np.empty((0, len(self.metadata.class_names)), dtype=np.float32)
        return self.backend(prepared.images)

    def domain_scores(self, images: np.ndarray) -> np.ndarray | None:
        """The domain gate's score per aligned image; None when no gate runs."""
        return None if self.domain is None else self.domain.scores(images)

    def in_domain(self, domain_scores: np.ndarray | None) -> np.ndarray | None:
        return None if domain_scores is None else domain_scores >= self.domain_threshold

    def fake_after_reencoding(self, images: np.ndarray, probabilities: np.ndarray,
                              domain_scores: np.ndarray | None) -> np.ndarray | None:
        """The JPEG recheck's P(FAKE) for the pictures about to be answered FAKE (NaN for the others); None where
        the model has no recheck or it is off."""
        if self.recheck is None:
            return None
        eligible = answered(probabilities, self.min_confidence, self.in_domain(domain_scores))
        return self.recheck.fake_after_reencoding(images, probabilities, self.fake_index, self.p_fake, eligible)

    def calibrated(self, logits: np.ndarray) -> np.ndarray:
        return calibrated_probabilities(torch.from_numpy(np.asarray(logits)), self.metadata.temperature).numpy()

    def p_fake(self, images: np.ndarray) -> np.ndarray:
        """Calibrated P(FAKE) of a uint8 batch, one pass of the served backend."""
        return self.calibrated(self.backend(images))[:, self.fake_index]

    def answer(self, probabilities: np.ndarray, prepared: PreparedBatch, domain_scores: np.ndarray | None = None,
               fake_after_reencoding: np.ndarray | None = None) -> list[dict[str, Any]]:
        return answers(probabilities, prepared, self.metadata, self.backend.name, self.model_version, self.min_confidence,
                       domain_scores, self.domain_threshold, fake_after_reencoding)

    def explainer(self) -> AlignedClassifier:
        """The eager model for Grad-CAM, built from the weights on the first explanation."""
        if self._explainer is None:
            self._explainer = load_model(self.model_dir, self.device)[0].requires_grad_(False)
        return self._explainer

    def run(self, requests: list[dict[str, Any]], explain: Collection[int] = ()) -> PipelineResult:
        """Answer one batch; ``explain``: the positions that asked for a Grad-CAM map."""
        started = time.perf_counter()
        prepared = self.decode(requests)
        decoded = time.perf_counter()
        logits = self.infer(prepared)
        probabilities = self.calibrated(logits)
        inferred = time.perf_counter()
        scores = self.domain_scores(prepared.images) if prepared.positions else None
        gated = time.perf_counter()
        rechecked = self.fake_after_reencoding(prepared.images, probabilities, scores) if prepared.positions else None
        recheck_ms = (time.perf_counter() - gated) * 1000 if self.recheck is not None else None
        responses = self.answer(probabilities, prepared, scores, rechecked)
        if self.spectral is not None:
            add_spectral_opinion(responses, prepared, self.spectral)
        if explain:
            add_explanations(responses, prepared, logits, self.explainer(), explain)
        decode_ms, backend_ms = (decoded - started) * 1000, (inferred - decoded) * 1000
        domain_ms = (gated - inferred) * 1000 if self.domain is not None else None
        return PipelineResult(responses, prepared.errors, decode_ms, backend_ms, domain_ms,
                              batch_metrics(prepared, responses, decode_ms, backend_ms, domain_ms, recheck_ms),
                              recheck_ms)

    def aligned(self, files: list[bytes], first_index: int = 0) -> np.ndarray:
        """The uint8 N×3×s×s batch the server classifies for these encoded files; an undecodable file raises its
        ``InvalidImageError``, numbered from ``first_index`` (offline reports must not skip images silently)."""
        prepared = self.decode([{"body": data} for data in files])
        if prepared.errors:
            position, error = next(iter(prepared.errors.items()))
            raise InvalidImageError(f"file {first_index + position}: {error}", error.status, error.kind)
        return prepared.images

    def assess(self, files: list[bytes], batch_size: int = 128, gate: bool = True,
               recheck_all: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Calibrated class probabilities (N x classes) for encoded files and, per file, whether the domain gate
        and the JPEG recheck let it be answered (False: UNCERTAIN whatever the confidence; None where neither
        runs), exactly as served (``aligned``). The server rechecks only pictures confident enough to be
        answered; ``recheck_all`` rechecks every FAKE-leaning one (the same answers at the served threshold, and
        the verdicts a sweep over lower thresholds needs)."""
        checked = gate and (self.domain is not None or self.recheck is not None)
        batches, passed = [], []
        for start in range(0, len(files), batch_size):
            images = self.aligned(files[start:start + batch_size], start)
            batches.append(self.calibrated(self.backend(images)))
            if checked:
                passed.append(passed_checks(self.recheck, images, batches[-1], self.fake_index, self.p_fake,
                                            self.in_domain(self.domain_scores(images)),
                                            0.0 if recheck_all else self.min_confidence))
        probabilities = (np.concatenate(batches) if batches
                         else np.empty((0, len(self.metadata.class_names)), np.float32))
        if not checked:
            return probabilities, None
        return probabilities, np.concatenate(passed) if passed else np.empty(0, dtype=bool)

    def probabilities(self, files: list[bytes], batch_size: int = 128) -> np.ndarray:
        """Calibrated class probabilities (N x classes) for encoded files, exactly as served (``aligned``)."""
        return self.assess(files, batch_size, gate=False)[0]
