"""The JPEG recheck: a FAKE answer must survive re-encoding the picture the way CIFAKE's files were encoded.

Every CIFAKE image, REAL and FAKE alike, is a 32×32 JPEG with the same quantisation tables and 4:2:0 chroma
subsampling, so the network has learnt "no 32-px JPEG block artefacts ⇒ FAKE": a clean downsample of a camera
photo has none and is called FAKE for that alone. The recheck re-encodes the aligned 32×32 picture with CIFAKE's
own tables and classifies it again; where the FAKE answer does not survive (the re-encoded picture leans REAL),
the answer rested on the missing artefacts, not on what the picture shows, and the service answers UNCERTAIN
(reason ``compression_sensitive``). A CIFAKE file re-encoded with its own tables barely changes, so CIFAKE
answers are kept. Only pictures the model would answer FAKE are rechecked (a REAL answer cannot come from
missing artefacts), which bounds the cost at one more forward pass for those.

The tables are read from the training data and travel with the weights (``metadata.json`` ``jpeg_recheck``).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, JpegImagePlugin

from detector.answer import RECHECK_CUTOFF, answered

SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}   # Pillow's codes


@dataclass(frozen=True)
class JpegRecheck:
    """How CIFAKE's files were encoded: the quantisation tables (as Pillow reads and writes them) and the
    chroma subsampling."""

    quantization: tuple[tuple[int, ...], ...]
    subsampling: str = "4:2:0"

    def __post_init__(self) -> None:
        if not self.quantization or any(len(table) != 64 for table in self.quantization):
            raise ValueError("jpeg_recheck.quantization needs one or more tables of 64 values")
        if self.subsampling not in SUBSAMPLING:
            raise ValueError(f"jpeg_recheck.subsampling must be one of {sorted(SUBSAMPLING)}, not {self.subsampling!r}")

    @classmethod
    def of(cls, metadata: Any) -> "JpegRecheck | None":
        """The model's recheck (``metadata.jpeg_recheck``), None where it has none."""
        raw = metadata.jpeg_recheck
        return None if raw is None else cls(tuple(tuple(int(v) for v in t) for t in raw["quantization"]),
                                            raw.get("subsampling", "4:2:0"))

    @classmethod
    def read(cls, jpeg_file: bytes) -> "JpegRecheck":
        """The encoding of one JPEG file of the training data (CIFAKE uses one for every file)."""
        image = Image.open(io.BytesIO(jpeg_file))
        if image.format != "JPEG":
            raise ValueError(f"the JPEG recheck reads its tables from a JPEG training file, not {image.format}")
        codes = {code: name for name, code in SUBSAMPLING.items()}
        sampling = JpegImagePlugin.get_sampling(image)
        if sampling not in codes:
            raise ValueError(f"the JPEG training file's chroma subsampling (Pillow code {sampling}) is not one of "
                             f"{sorted(SUBSAMPLING)}")
        subsampling = codes[sampling]
        return cls(tuple(tuple(int(v) for v in image.quantization[key]) for key in sorted(image.quantization)),
                   subsampling)

    def to_dict(self) -> dict[str, Any]:
        return {"quantization": [list(table) for table in self.quantization], "subsampling": self.subsampling}

    def reencode(self, images: np.ndarray) -> np.ndarray:
        """The uint8 N×3×s×s batch after a JPEG round trip with these tables."""
        out = np.empty_like(images)
        tables = [list(table) for table in self.quantization]
        for row, image in enumerate(images):
            buffer = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).save(
                buffer, "JPEG", qtables=tables, subsampling=SUBSAMPLING[self.subsampling])
            out[row] = np.asarray(Image.open(buffer).convert("RGB")).transpose(2, 0, 1)
        return out

    def fake_after_reencoding(self, images: np.ndarray, probabilities: np.ndarray, fake_index: int,
                              p_fake: Callable[[np.ndarray], np.ndarray], eligible: np.ndarray | None = None) -> np.ndarray:
        """P(FAKE) of each re-encoded picture that leans FAKE (``probabilities``: N x classes) and is ``eligible``
        (default: all; the server passes the ones no other check turned away), NaN for the others (not
        rechecked); ``p_fake``: uint8 batch -> calibrated P(FAKE) per image, one pass of the served model."""
        rechecked = probabilities.argmax(axis=1) == fake_index
        if eligible is not None:
            rechecked &= eligible
        result = np.full(len(images), np.nan)
        if rechecked.any():
            result[rechecked] = p_fake(self.reencode(images[rechecked]))
        return result


def survives(fake_after_reencoding: np.ndarray) -> np.ndarray:
    """False where a rechecked FAKE answer leans REAL once re-encoded (NaN: not rechecked, so kept)."""
    return ~(fake_after_reencoding < RECHECK_CUTOFF)


def passed_checks(recheck: JpegRecheck | None, images: np.ndarray, probabilities: np.ndarray, fake_index: int,
                  p_fake: Callable[[np.ndarray], np.ndarray], in_domain: np.ndarray | None = None,
                  min_confidence: float = 0.0) -> np.ndarray | None:
    """Per image, whether the domain gate (``in_domain``; None: no gate) and the JPEG recheck (None: none) let it
    be answered; None where neither runs. Only pictures confident enough to be answered are rechecked, as
    served; ``min_confidence`` 0 (fitting the threshold) rechecks every FAKE-leaning one in domain."""
    if recheck is None:
        return in_domain
    stable = survives(recheck.fake_after_reencoding(images, probabilities, fake_index, p_fake,
                                                    answered(probabilities, min_confidence, in_domain)))
    return stable if in_domain is None else stable & in_domain
