"""The request pipeline: one definition of what happens to a batch of requests, shared by the TorchServe
handler, the bare-model benchmark and the offline reports.

    decode -> align -> batch -> backend (+ domain gate) -> verdict (+ JPEG recheck) -> response

* ``extract_image_bytes``  request dict -> image bytes (raw body, multipart ``data``, base64 JSON, KServe instance)
* ``decode_batch``         requests -> one uint8 batch (N,3,32,32) + per-request errors
* backend                  batch -> logits (``detector.backends``; the archive picks the runtime)
* domain gate              batch -> domain score per image (``detector.domain``), where the model has a gate
* ``detector.answer.decide``  probabilities + domain scores -> REAL, FAKE or UNCERTAIN with its reason; it asks
                           for the JPEG recheck (``detector.recheck``) of the pictures about to be answered FAKE
* ``build_responses``      each request's JSON, built once: the verdict, both calibrated probabilities, the
                           domain score, the frequency score's second opinion and a Grad-CAM map where asked

Each stage is a small function that tests call alone; ``DetectorPipeline`` composes them. A bad input fails
only its own request (a 4xx JSON body in its slot); the rest of the batch is answered.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detector.answer import OperatingPoint, Verdicts, decide
from detector.backends import Backend, EagerBackend, batched_outputs, load_backend, select_device, self_checked
from detector.domain import DomainScorer
from detector.gradcam import explanation, grad_cam
from detector.metadata import ModelMetadata
from detector.model import AlignedClassifier, calibrated_probabilities, load_model
from detector.preprocessing import DecodeLimits, InvalidImageError, load_aligned
from detector.spectral import SPECTRAL_FILENAME, SpectralScore

logger = logging.getLogger(__name__)

JSON_IMAGE_KEYS = ("image", "data", "b64")


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
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                pass  # not JSON it can read (or nested past the parser's depth): let the image decoder judge the bytes
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



@dataclass(frozen=True)
class Opinions:
    """What is said beside a batch's verdicts, by row of the decoded images: the frequency score's P(FAKE) with
    its measured test accuracy (None: the model has no such score) and Grad-CAM maps for the rows that asked."""

    spectral_p_fake: np.ndarray | None = None
    spectral_accuracy: float | None = None
    explanations: dict[int, dict[str, Any]] = field(default_factory=dict)


def build_responses(prepared: PreparedBatch, probabilities: np.ndarray, verdicts: Verdicts, model_version: str,
                    backend_name: str, opinions: Opinions = Opinions()) -> list[dict[str, Any]]:
    """One JSON-serialisable response per request, in request order, each built once: the verdict (REAL, FAKE or
    UNCERTAIN with its reason), both calibrated probabilities, the version and backend that answered, the domain
    score wherever the gate ran, then the second opinion and the explanation; errors stay in their slots."""
    slots: dict[int, dict[str, Any]] = {pos: error_body(err) for pos, err in prepared.errors.items()}
    names = verdicts.class_names
    for row, position in enumerate(prepared.positions):
        given = verdicts.answer(row)
        response = {"label": given["label"],
                    "probabilities": {name: float(probabilities[row, i]) for i, name in enumerate(names)},
                    "model_version": model_version, "backend": backend_name}
        if verdicts.domain_scores is not None:
            response["domain_score"] = round(float(verdicts.domain_scores[row]), 6)
        if "abstained" in given:
            response["abstained"] = given["abstained"]
        if opinions.spectral_p_fake is not None:
            response["spectral"] = {"p_fake": float(opinions.spectral_p_fake[row]),
                                    "test_accuracy": opinions.spectral_accuracy}
        if row in opinions.explanations:
            response["gradcam"] = opinions.explanations[row]
        slots[position] = response
    return [slots[i] for i in range(len(slots))]


@dataclass
class PipelineResult:
    """A batch's answers (in request order; errors in their slots) and what each stage cost."""

    responses: list[dict[str, Any]]
    errors: dict[int, InvalidImageError]
    images: int                 # requests that decoded (0: no inference ran)
    decode_ms: float
    backend_ms: float
    domain_ms: float | None     # None: no domain gate ran
    recheck_ms: float | None    # None: no JPEG recheck ran


class DetectorPipeline:
    """The stages above wired to one model at one operating point: what a TorchServe worker runs per batch, and
    what the benchmark and the offline reports run too, so that their figures describe the served path."""

    def __init__(self, model_dir: Path, metadata: ModelMetadata, backend: Backend, point: OperatingPoint,
                 model_version: str, limits: DecodeLimits = DecodeLimits(), device: torch.device = torch.device("cpu"),
                 domain_files: Path | None = None, threads: int = 0) -> None:
        self.model_dir = Path(model_dir)
        self.metadata = metadata
        self.backend = backend
        self.point = point
        self.model_version = model_version
        self.limits = limits
        self.device = device
        if point.domain_threshold is not None and metadata.domain_gate is None:
            raise ValueError("a domain threshold was set for a model without a domain gate (metadata.json)")
        self.domain = (None if point.domain_threshold is None else   # no gate: nothing to load
                       DomainScorer.load(domain_files or self.model_dir, metadata.domain_gate, threads))
        self.fake_index = metadata.class_names.index("FAKE")
        has_spectral = (self.model_dir / SPECTRAL_FILENAME).exists()   # optional: models fitted without one
        self.spectral = SpectralScore.load(self.model_dir) if has_spectral else None
        self._explainer: AlignedClassifier | None = None

    @classmethod
    def load(cls, model_dir: Path, artifact: str | None = None, point: OperatingPoint | None = None,
             limits: DecodeLimits = DecodeLimits(), threads: int = 0, gpu_id: int | None = None,
             model_version: str | None = None, domain_files: Path | None = None) -> "DetectorPipeline":
        """As a worker builds it: ``artifact`` (a file in ``model_dir``, the archive's serialized file) on the
        assigned device, self-checked against the export's reference answers. Without an artifact: the eager
        fp32 weights (offline reports on a model directory, nothing exported). ``point``: the model's own unless
        given. The domain gate's files come from ``model_dir`` (an archive) or ``domain_files``
        (``export.domain_gate.gate_folder``, offline)."""
        model_dir = Path(model_dir)
        if threads:
            torch.set_num_threads(threads)
        device = select_device(gpu_id)
        if artifact is None:
            model, metadata = load_model(model_dir, device)
            backend: Backend = EagerBackend(model)
        else:
            metadata = ModelMetadata.load(model_dir)
            backend = self_checked(load_backend(model_dir / artifact, device, threads), model_dir, metadata, device)
        point = OperatingPoint.of(metadata) if point is None else point
        pipeline = cls(model_dir, metadata, backend, point, model_version or metadata.version, limits, device,
                       domain_files, threads)
        gate = ("no domain gate" if point.domain_threshold is None
                else f"out of domain below {point.domain_threshold:.4f}")
        gate += ", FAKE answers rechecked after JPEG re-encoding" if point.recheck else ", no JPEG recheck"
        logger.info("ai_detector %s (weights %s): %s on %s, %d threads, UNCERTAIN below confidence %.4f, %s",
                    pipeline.model_version, metadata.version, backend.name, device, torch.get_num_threads(),
                    point.min_confidence, gate)
        return pipeline

    def decode(self, requests: list[dict[str, Any]]) -> PreparedBatch:
        return decode_batch(requests, self.metadata, self.limits)

    def infer(self, prepared: PreparedBatch) -> np.ndarray:
        if not prepared.positions:
            return np.empty((0, len(self.metadata.class_names)), dtype=np.float32)
        return self.backend(prepared.images)

    def domain_scores(self, images: np.ndarray) -> np.ndarray | None:
        """The domain gate's score per aligned image; None when no gate runs."""
        return None if self.domain is None else self.domain.scores(images)

    def calibrated(self, logits: np.ndarray) -> np.ndarray:
        return calibrated_probabilities(torch.from_numpy(np.asarray(logits)), self.metadata.temperature).numpy()

    def p_fake(self, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
        """Calibrated P(FAKE) of a uint8 batch with the served backend."""
        return self.calibrated(batched_outputs(self.backend, images, batch_size))[:, self.fake_index]

    def decide(self, images: np.ndarray, probabilities: np.ndarray, domain_scores: np.ndarray | None,
               point: OperatingPoint | None = None) -> Verdicts:
        """The verdicts for aligned ``images`` (``point``: this pipeline's unless given), rechecking the pictures
        about to be answered FAKE with the served backend."""
        point = self.point if point is None else point
        return decide(probabilities, self.metadata.class_names, point, domain_scores, images, self.p_fake)

    def opinions(self, prepared: PreparedBatch, logits: np.ndarray, explain: Collection[int]) -> Opinions:
        """The frequency score's P(FAKE) for every decoded image and Grad-CAM maps for the positions in
        ``explain``: computed on the served weights (the eager model built from the archive's safetensors, since
        the TorchScript/ONNX graphs expose no intermediate layers) and the very uint8 input the backend
        classified; the class a map explains is the backend's."""
        if not prepared.positions:
            return Opinions()
        spectral = None if self.spectral is None else self.spectral.p_fake(prepared.images.transpose(0, 2, 3, 1))
        accuracy = None if self.spectral is None else self.spectral.metrics.get("test_accuracy")
        rows = [row for row, position in enumerate(prepared.positions) if position in explain]
        explanations = {}
        if rows:
            model = self.explainer()
            images = torch.from_numpy(prepared.images[rows]).to(next(model.parameters()).device)
            cams = grad_cam(model, images, np.asarray(logits)[rows].argmax(axis=1).tolist())
            explanations = {row: explanation(prepared.images[row].transpose(1, 2, 0), cam, model.architecture)
                            for row, cam in zip(rows, cams)}
        return Opinions(spectral, accuracy, explanations)

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
        verdicts = self.decide(prepared.images, probabilities, scores)
        decided = time.perf_counter()
        responses = build_responses(prepared, probabilities, verdicts, self.model_version, self.backend.name,
                                    self.opinions(prepared, logits, explain))
        return PipelineResult(responses, prepared.errors, len(prepared.positions), (decoded - started) * 1000,
                              (inferred - decoded) * 1000, (gated - inferred) * 1000 if self.domain is not None else None,
                              (decided - gated) * 1000 if self.point.recheck is not None else None)

    def aligned(self, files: list[bytes], first_index: int = 0) -> np.ndarray:
        """The uint8 N×3×s×s batch the server classifies for these encoded files; an undecodable file raises its
        ``InvalidImageError``, numbered from ``first_index`` (offline reports must not skip images silently)."""
        prepared = self.decode([{"body": data} for data in files])
        if prepared.errors:
            position, error = next(iter(prepared.errors.items()))
            raise InvalidImageError(f"file {first_index + position}: {error}", error.status, error.kind)
        return prepared.images

    def assess(self, files: list[bytes], batch_size: int = 128,
               point: OperatingPoint | None = None) -> tuple[np.ndarray, Verdicts]:
        """Calibrated class probabilities (N x classes) and the verdicts for encoded files, exactly as served
        (``aligned``), at ``point`` (this pipeline's unless given: a point with ``min_confidence`` 0 rechecks
        every FAKE-leaning picture in domain, the verdicts a sweep over thresholds needs)."""
        batches, verdicts = [], []
        for images, probabilities in self.calibrated_batches(files, batch_size):
            batches.append(probabilities)
            verdicts.append(self.decide(images, probabilities, self.domain_scores(images), point))
        if not batches:
            empty = np.empty((0, len(self.metadata.class_names)), np.float32)
            return empty, self.decide(np.empty((0, 3, 1, 1), np.uint8), empty, None, point)
        return np.concatenate(batches), Verdicts.concatenate(verdicts)

    def probabilities(self, files: list[bytes], batch_size: int = 128) -> np.ndarray:
        """Calibrated class probabilities (N x classes) for encoded files, exactly as served (``aligned``)."""
        return np.concatenate([probabilities for _, probabilities in self.calibrated_batches(files, batch_size)] or
                              [np.empty((0, len(self.metadata.class_names)), np.float32)])

    def calibrated_batches(self, files: list[bytes], batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``batch_size`` files at a time: their aligned images and calibrated probabilities, as served."""
        for start in range(0, len(files), batch_size):
            images = self.aligned(files[start:start + batch_size], start)
            yield images, self.calibrated(self.backend(images))
