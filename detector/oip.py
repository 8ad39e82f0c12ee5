"""The Open Inference Protocol (KServe v2) for this detector, one definition for the handler that answers it and
the clients that read it (``ops.oip``).

Request: one input tensor, datatype BYTES, with N elements (any shape), each one encoded image file: base64 text
in JSON (TorchServe's gRPC frontend hands gRPC ``bytes_contents`` over that way too), or raw bytes in Triton's
binary tensor extension (tritonclient's default; the JSON part's length in the ``Inference-Header-Content-Length``
header). At most ``max_images`` elements: a request is one unit of work for one worker.

Response: the tensors of ``output_specs``, each of shape [N] in request order. An image the REST path would refuse
keeps its row: label ``ERROR``, its REST JSON error in ``error``, zeros in the numbers. The protocol has no
per-instance status, so a request gets HTTP 200 if at least one of its images was answered, and the first refusal's
status with ``{"error": ...}`` beside the outputs when none was (one bad image in a one-image request behaves as on
the REST path); a malformed request gets 400 and only the ``error`` tensor (one element).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

from detector.answer import forced_label

INPUT_NAME = "image"
ERROR_LABEL = "ERROR"
HEADER_LENGTH = "Inference-Header-Content-Length"   # Triton's binary tensor extension


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    meaning: str


def output_specs(class_names: tuple[str, ...], domain_gate: bool) -> tuple[TensorSpec, ...]:
    """The named outputs, per image: the verdict, both calibrated probabilities, why an answer is UNCERTAIN, the
    domain score (where the gate runs) and the refusal of an input that is not an image the model accepts."""
    return (TensorSpec("label", "BYTES", f"{', '.join(class_names)}, UNCERTAIN, or {ERROR_LABEL} for a refused image"),
            TensorSpec("leaning", "BYTES", "the class an UNCERTAIN answer leans to (the label otherwise)"),
            *(TensorSpec(probability_name(name), "FP32", f"calibrated P({name})") for name in class_names),
            TensorSpec("abstained_reason", "BYTES", "out_of_domain, low_confidence, compression_sensitive; '' if answered"),
            *((TensorSpec("domain_score", "FP32", "similarity to the training pictures (the gate's score)"),)
              if domain_gate else ()),
            TensorSpec("error", "BYTES", "the REST path's JSON error {code, type, message}; '' if not refused"))


def probability_name(class_name: str) -> str:
    return f"p_{class_name.lower()}"


class ProtocolError(ValueError):
    """The request is not an inference request this model reads (one status for the whole request)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class InferRequest:
    """A parsed inference request: its id and one pipeline request per image, in order."""

    id: str
    items: list[dict[str, Any]]


def parse_request(payload: Any, header_length: int | None, max_images: int) -> InferRequest | None:
    """The inference request in a TorchServe request's body (a dict where TorchServe decoded JSON, bytes
    otherwise), or None where the body is not one (an image, or this project's own JSON); ProtocolError where it
    is one but malformed. Elements become the pipeline's request dicts, so a bad one fails only its own row."""
    binary = b""
    if isinstance(payload, (bytes, bytearray)):
        if header_length is None and payload[:1] != b"{":
            return None
        head = payload if header_length is None else payload[:header_length]
        binary = b"" if header_length is None else bytes(payload[header_length:])
        try:
            document = json.loads(head)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            if header_length is None:
                return None
            raise ProtocolError(f"the inference header ({header_length} bytes) is not JSON: {exc}") from None
    else:
        document = payload
    if not isinstance(document, dict) or "inputs" not in document:
        if header_length is None:
            return None
        raise ProtocolError("an inference request needs an 'inputs' list")
    request_id = str(document.get("id", ""))
    inputs = document["inputs"]
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ProtocolError(f"send one input tensor '{INPUT_NAME}' of encoded image files (BYTES)")
    tensor = inputs[0]
    if tensor.get("datatype") != "BYTES":
        raise ProtocolError(f"input '{tensor.get('name')}' must be BYTES (encoded image files), not {tensor.get('datatype')!r}")
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ProtocolError(f"input shape must be a list of non-negative integers, not {shape!r}")
    count = math.prod(shape)
    if count == 0:
        raise ProtocolError("the request holds no image")
    if count > max_images:
        raise ProtocolError(f"{count} images in one request; at most {max_images} (send more requests)", status=413)
    parameters = tensor.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ProtocolError(f"input parameters must be an object, not {parameters!r}")
    size = parameters.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= len(binary):
            raise ProtocolError(f"binary_data_size {size!r} does not fit the {len(binary)} bytes after the header")
        items = [{"body": element} for element in split_bytes_tensor(binary[:size])]
    else:
        items = [{"body": {"b64": element}} for element in flatten(tensor.get("data"))]
    if len(items) != count:
        raise ProtocolError(f"shape {shape} holds {count} elements, the data {len(items)}")
    return InferRequest(request_id, items)


def flatten(data: Any) -> list[Any]:
    """JSON tensor data, row-major (the protocol allows nested lists); iterative, whatever the nesting."""
    if not isinstance(data, list):
        raise ProtocolError("input 'data' must be a list of base64 strings")
    leaves, stack = [], [iter(data)]
    while stack:
        element = next(stack[-1], stack)
        if element is stack:
            stack.pop()
        elif isinstance(element, list):
            stack.append(iter(element))
        else:
            leaves.append(element)
    return leaves


def split_bytes_tensor(raw: bytes) -> list[bytes]:
    """Triton's serialised BYTES tensor: each element a 4-byte little-endian length, then its bytes."""
    elements, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise ProtocolError("binary BYTES tensor cut inside an element's length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise ProtocolError("binary BYTES tensor cut inside an element")
        elements.append(raw[offset:offset + length])
        offset += length
    return elements


def infer_response(request_id: str, answers: list[dict[str, Any]], model_name: str, model_version: str,
                   specs: tuple[TensorSpec, ...]) -> tuple[int, dict[str, Any]]:
    """The HTTP status and body for one request's answers (the pipeline's responses, refusals in their rows)."""
    columns: dict[str, list[Any]] = {spec.name: [] for spec in specs}
    for answer in answers:
        refused = "code" in answer
        probabilities = answer.get("probabilities", {})
        row = {"label": ERROR_LABEL if refused else answer["label"],
               "leaning": "" if refused else forced_label(answer),
               "abstained_reason": answer["abstained"]["reason"] if "abstained" in answer else "",
               "domain_score": float(answer.get("domain_score", 0.0)),
               "error": json.dumps(answer) if refused else "",
               **{probability_name(name): float(p) for name, p in probabilities.items()}}
        for spec in specs:
            columns[spec.name].append(row.get(spec.name, 0.0))
    body = {"id": request_id, "model_name": model_name, "model_version": model_version,
            "outputs": [{"name": spec.name, "datatype": spec.datatype, "shape": [len(answers)], "data": columns[spec.name]}
                        for spec in specs]}
    refusals = [answer for answer in answers if "code" in answer]
    if answers and len(refusals) == len(answers):
        first = refusals[0]
        body["error"] = f"{first['type']}: {first['message']}"
        return int(first["code"]), body
    return 200, body


def read_rows(columns: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """A response's outputs (name -> values in request order, BYTES as text) as one dict per image, its ``error``
    parsed back into the REST path's JSON error ({} where the image was answered)."""
    count = len(next(iter(columns.values()), []))
    rows = [{name: values[row] for name, values in columns.items()} for row in range(count)]
    for row in rows:
        row["error"] = json.loads(row["error"]) if row.get("error") else {}
    return rows


def protocol_error_response(request_id: str, error: ProtocolError, model_name: str,
                            model_version: str) -> tuple[int, dict[str, Any]]:
    """A malformed request's status and body: ``{"error": ...}`` as the protocol asks, and the same error as the
    one ``error`` element, since TorchServe's gRPC frontend forwards only the outputs."""
    detail = json.dumps({"code": error.status, "type": "BadInferenceRequest", "message": str(error)})
    return error.status, {"error": str(error), "id": request_id, "model_name": model_name, "model_version": model_version,
                          "outputs": [{"name": "error", "datatype": "BYTES", "shape": [1], "data": [detail]}]}


def model_metadata(model_name: str, model_version: str, specs: tuple[TensorSpec, ...]) -> dict[str, Any]:
    """The protocol's model metadata (TorchServe 0.12 routes no REST metadata call and its gRPC one names no
    tensors: the handler answers it to the management API's customized describe)."""
    return {"name": model_name, "versions": [model_version], "platform": "pytorch_torchserve",
            "inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": spec.name, "datatype": spec.datatype, "shape": [-1], "meaning": spec.meaning}
                        for spec in specs]}
