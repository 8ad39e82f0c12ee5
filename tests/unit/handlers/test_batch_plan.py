"""A TorchServe batch mixing plain requests and Open Inference Protocol requests: one pipeline item per image, the
answers regrouped per request with their statuses, explanations refused over the protocol."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from detector.oip import output_specs
from handlers.batch_plan import plan_batch
from tests.conftest import FakeContext

SPECS = output_specs(("REAL", "FAKE"), domain_gate=False)
OK = {"label": "FAKE", "probabilities": {"REAL": 0.1, "FAKE": 0.9}}
REFUSED = {"code": 415, "type": "UnsupportedFormat", "message": "not a recognised image format"}


def oip(*files: bytes) -> dict:
    return {"body": {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(files)],
                                 "data": [base64.b64encode(f).decode() for f in files]}]}}


def test_protocol_requests_expand_to_one_item_per_image_and_answers_regroup() -> None:
    batch = [{"body": b"plain"}, oip(b"a", b"b"), {"body": {"inputs": []}}, {"body": b"bad"}]
    plan = plan_batch(batch, FakeContext(Path("."), "x"), per_item=True, max_images=32)
    assert len(plan.items) == 4 and plan.spans == [(0, 1), (1, 3), (3, 3), (3, 4)]
    bodies, statuses = plan.answers([OK, OK, REFUSED, REFUSED], "ai_detector", "1.0", SPECS)
    assert bodies[0] == OK and bodies[3] == REFUSED
    labels = next(o["data"] for o in bodies[1]["outputs"] if o["name"] == "label")
    assert labels == ["FAKE", "ERROR"]
    assert bodies[2]["outputs"][0]["name"] == "error"
    assert statuses == {2: 400, 3: 415}


def test_explanations_stay_on_plain_requests_and_are_refused_over_the_protocol() -> None:
    context = FakeContext(Path("."), "x")
    context.headers = {0: {"explain": "True"}, 1: {"explain": "True"}, 2: {}}
    plan = plan_batch([oip(b"a"), {"body": b"plain"}, {"body": b"other"}], context, per_item=True, max_images=32)
    assert plan.items == [{"body": b"plain"}, {"body": b"other"}] and plan.explain == {0}
    bodies, statuses = plan.answers([OK, OK], "ai_detector", "1.0", SPECS)
    assert statuses == {0: 400} and "/explanations" in bodies[0]["error"]


def test_the_binary_header_is_read_per_request_and_must_be_a_number() -> None:
    context = FakeContext(Path("."), "x")
    header = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": 5}}]}).encode()
    context.headers = {0: {"inference-header-content-length": str(len(header))},
                       1: {"Inference-Header-Content-Length": "twelve"}}
    plan = plan_batch([{"body": header + b"\x01\x00\x00\x00x"}, {"body": b"{}"}], context, per_item=True, max_images=32)
    assert plan.items == [{"body": b"x"}] and plan.protocol[1].status == 400
