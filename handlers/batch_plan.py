"""How one TorchServe batch becomes the pipeline's items and how their answers go back to TorchServe's requests:
a plain request is one item; an Open Inference Protocol request one item per image, so that its images share the
batch with the others and a bad one fails only its own row; a malformed one no item at all."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from detector.oip import (HEADER_LENGTH, InferRequest, ProtocolError, TensorSpec, infer_response, parse_request,
                          protocol_error_response)


@dataclass
class BatchPlan:
    """A TorchServe batch as the pipeline's items: a plain request is one item, an Open Inference Protocol request
    one item per image (so its images share the batch with the others), a malformed one none."""

    items: list[dict[str, Any]] = field(default_factory=list)
    explain: set[int] = field(default_factory=set)             # items that asked for Grad-CAM
    spans: list[tuple[int, int]] = field(default_factory=list)  # per request: its items
    protocol: dict[int, InferRequest | ProtocolError] = field(default_factory=dict)

    def answers(self, responses: list[dict[str, Any]], model_name: str, model_version: str,
                specs: tuple[TensorSpec, ...]) -> tuple[list[dict[str, Any]], dict[int, int]]:
        """Each request's body, and the status of those that are not 200."""
        bodies, statuses = [], {}
        for position, (start, stop) in enumerate(self.spans):
            parsed = self.protocol.get(position)
            if parsed is None:
                status, body = responses[start].get("code", 200), responses[start]
            elif isinstance(parsed, ProtocolError):
                status, body = protocol_error_response("", parsed, model_name, model_version)
            else:
                status, body = infer_response(parsed.id, responses[start:stop], model_name, model_version, specs)
            bodies.append(body)
            if status != 200:
                statuses[position] = status
        return bodies, statuses


def plan_batch(requests: list[dict[str, Any]], context: Any, per_item: bool, max_images: int) -> BatchPlan:
    """Expand the batch's Open Inference Protocol requests into one pipeline item per image."""
    plan, asked = BatchPlan(), explanation_positions(requests, context)
    for position, request in enumerate(requests):
        start = len(plan.items)
        try:
            parsed = parse_request(request.get("data", request.get("body")),
                                   binary_header_length(context, position) if per_item else None, max_images)
            if parsed is not None and position in asked:
                raise ProtocolError("no Grad-CAM over the Open Inference Protocol: POST the image to /explanations/{model}")
        except ProtocolError as error:
            parsed = error
        if parsed is None:
            plan.items.append(request)
            if position in asked:
                plan.explain.add(start)
        else:
            plan.protocol[position] = parsed
            if isinstance(parsed, InferRequest):
                plan.items.extend(parsed.items)
        plan.spans.append((start, len(plan.items)))
    return plan


def binary_header_length(context: Any, position: int) -> int | None:
    """The JSON part's length of a request in Triton's binary tensor extension (None: all JSON, or not such)."""
    value = context.get_request_header(position, HEADER_LENGTH) or context.get_request_header(position, HEADER_LENGTH.lower())
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ProtocolError(f"{HEADER_LENGTH} must be an integer, not {value!r}") from None


def one_request_per_item(items: list[Any], context: Any) -> bool:
    """False under a request envelope (KServe's {"instances": [...]}), where one HTTP request carries
    several items: their errors stay in the response body, since an HTTP status belongs to the request."""
    return context.request_ids is None or len(context.request_ids) == len(items)


def explanation_positions(items: list[Any], context: Any) -> set[int]:
    """Positions sent to /explanations (TorchServe marks such requests with the header explain=True);
    under an envelope the one HTTP request's header covers all its items."""
    if one_request_per_item(items, context):
        return {i for i in range(len(items)) if context.get_request_header(i, "explain") == "True"}
    return set(range(len(items))) if context.get_request_header(0, "explain") == "True" else set()
