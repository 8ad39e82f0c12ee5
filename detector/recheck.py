"""The JPEG recheck: a FAKE answer must survive re-encoding the picture the way CIFAKE's files were encoded.

Every CIFAKE image, REAL and FAKE alike, is a 32×32 JPEG with the same quantisation tables and 4:2:0 chroma
subsampling, so the network has learnt "no 32-px JPEG block artefacts ⇒ FAKE": a clean downsample of a camera
photo has none and is called FAKE for that alone. The recheck re-encodes the aligned 32×32 picture with CIFAKE's
own tables and classifies it again; where the FAKE answer does not survive (the re-encoded picture leans REAL),
the answer rested on the missing artefacts, not on what the picture shows, and the service answers UNCERTAIN
(reason ``compression_sensitive``, decided in ``detector.answer``). A CIFAKE file re-encoded with its own tables
barely changes, so CIFAKE answers are kept. Only pictures about to be answered FAKE are rechecked (a REAL
answer cannot come from missing artefacts), which bounds the cost at one more forward pass for those.

The tables are read from the training data and travel with the weights (``metadata.json`` ``jpeg_recheck``).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from detector.metadata import SUBSAMPLING, JpegRecheck


def reencode(encoding: JpegRecheck, images: np.ndarray) -> np.ndarray:
    """The uint8 N×3×s×s batch after a JPEG round trip with CIFAKE's tables."""
    out = np.empty_like(images)
    tables = [list(table) for table in encoding.quantization]
    for row, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).save(
            buffer, "JPEG", qtables=tables, subsampling=SUBSAMPLING[encoding.subsampling])
        out[row] = np.asarray(Image.open(buffer).convert("RGB")).transpose(2, 0, 1)
    return out
