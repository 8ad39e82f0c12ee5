"""The archive's serving options (model-config.yaml's ``handler`` section), parsed once at worker start into
one resolved form each: decode limits, intra-op threads and the operating point the answers are decided at."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from detector.answer import OperatingPoint
from detector.metadata import JpegRecheck, ModelMetadata
from detector.preprocessing import DecodeLimits

THREADS_ENV = "AI_DETECTOR_INTRA_OP_THREADS"
LIMIT_KEYS = {"max_image_bytes": "max_bytes", "max_image_pixels": "max_pixels", "max_image_side": "max_side"}


@dataclass(frozen=True)
class HandlerSettings:
    limits: DecodeLimits
    threads: int                  # intra-op threads (never 0: one per core unless set)
    point: OperatingPoint
    max_request_images: int = 32  # images in one Open Inference Protocol request (one unit of a worker's work)

    @classmethod
    def from_yaml(cls, section: dict[str, Any] | None, metadata: ModelMetadata,
                  environ: dict[str, str] | None = None) -> "HandlerSettings":
        """``$AI_DETECTOR_INTRA_OP_THREADS`` (set where TorchServe starts) overrides the archive's
        ``intra_op_threads``, so operators size workers x threads to the cores without rebuilding."""
        section = dict(section or {})
        environ = os.environ if environ is None else environ
        archive_threads = int(section.pop("intra_op_threads", 0))
        threads = int(environ.get(THREADS_ENV) or archive_threads) or (os.cpu_count() or 1)
        own = OperatingPoint.of(metadata)
        gate = domain_threshold(section.pop("domain_threshold", "model"), own)
        real_gate = real_domain_threshold(section.pop("real_domain_threshold", "model"), own)
        recheck = jpeg_recheck(section.pop("jpeg_recheck", "model"), section.pop("recheck_min_fake", "model"), own)
        point = OperatingPoint(min_confidence(section.pop("min_confidence", "model"), own), gate, recheck,
                               None if gate is None else real_gate)   # no gate runs: no domain score to compare
        max_request_images = section.pop("max_request_images", cls.max_request_images)
        if not _is_number(max_request_images) or int(max_request_images) != max_request_images or max_request_images < 1:
            raise ValueError(f"handler max_request_images must be a whole number >= 1, not {max_request_images!r}")
        unknown = set(section) - set(LIMIT_KEYS)
        if unknown:
            raise ValueError(f"unknown handler settings: {sorted(unknown)}")
        limits = DecodeLimits(**{LIMIT_KEYS[k]: int(v) for k, v in section.items()})
        return cls(limits, threads, point, int(max_request_images))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def min_confidence(value: Any, own: OperatingPoint) -> float:
    """``model`` (the threshold fitted with the weights), ``off`` (always REAL or FAKE; YAML may read it as
    false) or a confidence in [0.5, 1)."""
    if value == "model":
        return own.min_confidence
    if value in ("off", False):
        return 0.0
    if _is_number(value) and 0.5 <= value < 1.0:
        return float(value)
    raise ValueError(f"handler min_confidence must be 'model', 'off' or a number in [0.5, 1), not {value!r}")


def domain_threshold(value: Any, own: OperatingPoint) -> float | None:
    """``model`` (the gate fitted with the weights, if any), ``off`` (no domain gate: it is not even computed)
    or a domain score in [-1, 1] (cosine similarity; higher turns more pictures away) for a model with a gate."""
    if value == "model":
        return own.domain_threshold
    if value in ("off", False):
        return None
    if _is_number(value) and -1.0 <= value <= 1.0:
        return None if own.domain_threshold is None else float(value)
    raise ValueError(f"handler domain_threshold must be 'model', 'off' or a number in [-1, 1], not {value!r}")


def real_domain_threshold(value: Any, own: OperatingPoint) -> float | None:
    """``model`` (the REAL answers' threshold fitted with the weights, if any), ``off`` (a REAL answer needs only
    ``domain_threshold``, as model 0.4.4 answered) or a domain score in [-1, 1]."""
    if value == "model":
        return own.real_domain_threshold
    if value in ("off", False):
        return None
    if _is_number(value) and -1.0 <= value <= 1.0:
        return float(value)
    raise ValueError(f"handler real_domain_threshold must be 'model', 'off' or a number in [-1, 1], not {value!r}")


def jpeg_recheck(value: Any, min_fake: Any, own: OperatingPoint) -> JpegRecheck | None:
    """``model`` (the recheck shipped with the weights, if any) or ``off`` (FAKE answers are not rechecked: half
    the forward passes of FAKE-leaning traffic saved, camera photos called FAKE more often). ``min_fake``:
    ``model`` or the P(FAKE) in [0.5, 1) the re-encoded picture needs for the FAKE answer to stand (0.5: as
    model 0.4.4 answered)."""
    if value in ("off", False):
        return None
    if value != "model":
        raise ValueError(f"handler jpeg_recheck must be 'model' or 'off', not {value!r}")
    if own.recheck is None or min_fake == "model":
        return own.recheck
    if _is_number(min_fake) and 0.5 <= min_fake < 1.0:
        return dataclasses.replace(own.recheck, min_fake=float(min_fake))
    raise ValueError(f"handler recheck_min_fake must be 'model' or a number in [0.5, 1), not {min_fake!r}")
