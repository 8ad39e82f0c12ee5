"""The Open Inference Protocol codec: which bodies are inference requests, how their images become pipeline items,
which malformed ones are refused whole, and how answers and refusals become named outputs and a status."""

from __future__ import annotations

import base64
import json
import struct

import pytest

from detector.oip import (ERROR_LABEL, InferRequest, ProtocolError, infer_response, model_metadata, output_specs,
                          parse_request, protocol_error_response, read_rows, split_bytes_tensor)

SPECS = output_specs(("REAL", "FAKE"), domain_gate=True)


def request(data: list, shape: list | None = None, datatype: str = "BYTES", parameters=None, **extra) -> dict:
    tensor = {"name": "image", "datatype": datatype, "shape": [len(data)] if shape is None else shape, "data": data}
    return {"inputs": [tensor if parameters is None else {**tensor, "parameters": parameters}], **extra}


def binary_body(files: list[bytes]) -> tuple[bytes, int]:
    raw = b"".join(struct.pack("<I", len(f)) + f for f in files)
    header = json.dumps({"id": "b", "inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(files)],
                                                "parameters": {"binary_data_size": len(raw)}}]}).encode()
    return header + raw, len(header)


def test_images_and_plain_bodies_are_not_inference_requests() -> None:
    for payload in (b"\xff\xd8\xff\xe0 a jpeg", b"{not json", {"image": "aGVsbG8="}, "aGVsbG8=", b"{\"image\": \"x\"}"):
        assert parse_request(payload, None, 32) is None


def test_json_and_binary_requests_give_one_pipeline_item_per_image_in_order() -> None:
    files = [b"first", b"second", b""]
    as_json = request([base64.b64encode(f).decode() for f in files], id=7)
    for payload in (as_json, json.dumps(as_json).encode()):
        parsed = parse_request(payload, None, 32)
        assert parsed == InferRequest("7", [{"body": {"b64": base64.b64encode(f).decode()}} for f in files])
    body, length = binary_body(files)
    assert parse_request(body, length, 32) == InferRequest("b", [{"body": f} for f in files])
    nested = request([["YQ=="], ["Yg=="]], shape=[2, 1])
    assert [item["body"]["b64"] for item in parse_request(nested, None, 32).items] == ["YQ==", "Yg=="]
    deep = "Yw=="
    for _ in range(5000):   # deeper than Python's recursion limit: still one element, no RecursionError
        deep = [deep]
    assert parse_request(request([deep], shape=[1]), None, 32).items == [{"body": {"b64": "Yw=="}}]
    hostile = b'{"inputs":' + b"[" * 100000
    assert parse_request(hostile, None, 32) is None   # not JSON it can read: the image decoder refuses it
    with pytest.raises(ProtocolError):
        parse_request(hostile, len(hostile), 32)


@pytest.mark.parametrize("payload, status", [
    (request([], shape=[0]), 400), (request(["YQ=="], datatype="FP32"), 400), (request(["YQ=="], shape=[2]), 400),
    (request(["YQ=="], shape=[-1]), 400), ({"inputs": []}, 400), ({"inputs": "x"}, 400),
    ({"inputs": [request(["YQ=="])["inputs"][0]] * 2}, 400), (request("YQ==", shape=[1]), 400),
    (request(["YQ=="], parameters=[1]), 400), (request(["YQ=="] * 33), 413)])
def test_malformed_requests_are_refused_whole(payload: dict, status: int) -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_request(payload, None, 32)
    assert refused.value.status == status


def test_binary_requests_are_checked_against_their_declared_sizes() -> None:
    body, length = binary_body([b"abc", b"de"])
    for broken, header_length in ((body[:-1], length), (body, length + 3), (b"{}", 2)):
        with pytest.raises(ProtocolError):
            parse_request(broken, header_length, 32)
    with pytest.raises(ProtocolError):
        split_bytes_tensor(struct.pack("<I", 9) + b"short")
    assert split_bytes_tensor(b"") == []


def answer(label: str, p_fake: float, reason: str | None = None) -> dict:
    body = {"label": label, "probabilities": {"REAL": 1 - p_fake, "FAKE": p_fake}, "domain_score": 0.6}
    if reason:
        body["abstained"] = {"reason": reason, "leaning": "FAKE"}
    return body


REFUSED = {"code": 415, "type": "UnsupportedFormat", "message": "not a recognised image format"}


def test_answers_become_named_columns_and_refusals_keep_their_rows() -> None:
    status, body = infer_response("r", [answer("REAL", 0.1), REFUSED, answer("UNCERTAIN", 0.7, "low_confidence")],
                                  "ai_detector", "0.4.5", SPECS)
    assert status == 200 and "error" not in body and (body["id"], body["model_version"]) == ("r", "0.4.5")
    columns = {o["name"]: o["data"] for o in body["outputs"]}
    assert all(o["shape"] == [3] for o in body["outputs"])
    assert columns["label"] == ["REAL", ERROR_LABEL, "UNCERTAIN"]
    assert columns["leaning"] == ["REAL", "", "FAKE"]
    assert columns["p_fake"] == [0.1, 0.0, 0.7] and columns["abstained_reason"] == ["", "", "low_confidence"]
    rows = read_rows(columns)
    assert rows[1]["error"] == REFUSED and rows[0]["error"] == {} and rows[2]["domain_score"] == 0.6


def test_a_request_whose_images_are_all_refused_takes_the_first_refusal_status() -> None:
    too_large = {"code": 413, "type": "TooLarge", "message": "over 20 MiB"}
    status, body = infer_response("", [too_large, REFUSED], "ai_detector", "0.4.5", SPECS)
    assert status == 413 and body["error"] == "TooLarge: over 20 MiB"
    assert [json.loads(e) for e in next(o for o in body["outputs"] if o["name"] == "error")["data"]] == [too_large, REFUSED]


def test_a_malformed_request_answers_the_protocol_error_and_one_error_element() -> None:
    status, body = protocol_error_response("", ProtocolError("too many", status=413), "ai_detector", "0.4.5")
    assert status == 413 and body["error"] == "too many"
    assert read_rows({o["name"]: o["data"] for o in body["outputs"]})[0]["error"]["code"] == 413


def test_outputs_follow_the_class_names_and_the_gate() -> None:
    assert [s.name for s in SPECS] == ["label", "leaning", "p_real", "p_fake", "abstained_reason", "domain_score", "error"]
    assert "domain_score" not in [s.name for s in output_specs(("REAL", "FAKE"), domain_gate=False)]
    metadata = model_metadata("ai_detector", "0.4.5", SPECS)
    assert [o["name"] for o in metadata["outputs"]] == [s.name for s in SPECS] and metadata["inputs"][0]["name"] == "image"
