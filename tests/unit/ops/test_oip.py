"""ops.oip reads a ModelInferResponse as TorchServe 0.12 writes it (every output in ``contents``, BYTES elements as
JSON text; the rows equal those the REST envelope gives) and retries what a retry may answer, as ops.client does."""

from __future__ import annotations

import json

import grpc
import pytest
from tritonclient.grpc import service_pb2 as messages

from detector.oip import infer_response, output_specs, read_rows
from ops.oip import OipGrpcClient, is_retriable_rpc, response_columns

SPECS = output_specs(("REAL", "FAKE"), domain_gate=True)
ANSWERS = [{"label": "REAL", "probabilities": {"REAL": 0.75, "FAKE": 0.25}, "domain_score": 0.5},
           {"code": 415, "type": "UnsupportedFormat", "message": "not a recognised image format"}]


def as_torchserve_grpc(body: dict) -> messages.ModelInferResponse:
    """What TorchServe's GRPCJob builds from the handler's JSON (its setOutputContents: BYTES via JsonElement.toString)."""
    response = messages.ModelInferResponse(id=body["id"], model_name=body["model_name"], model_version=body["model_version"])
    for output in body["outputs"]:
        tensor = response.outputs.add(name=output["name"], datatype=output["datatype"], shape=output["shape"])
        if output["datatype"] == "BYTES":
            tensor.contents.bytes_contents.extend(json.dumps(value).encode() for value in output["data"])
        else:
            tensor.contents.fp32_contents.extend(output["data"])
    return response


def test_grpc_rows_equal_the_json_rows() -> None:
    _, body = infer_response("r", ANSWERS, "ai_detector", "0.4.5", SPECS)
    over_json = read_rows({o["name"]: o["data"] for o in body["outputs"]})
    over_grpc = read_rows(response_columns(as_torchserve_grpc(body)))
    assert over_grpc[1] == over_json[1] and over_grpc[1]["error"]["code"] == 415
    assert over_grpc[0]["label"] == "REAL" and over_grpc[0]["p_fake"] == pytest.approx(0.25)


def test_unexpected_output_types_are_reported() -> None:
    response = messages.ModelInferResponse()
    response.outputs.add(name="x", datatype="INT64", shape=[1])
    with pytest.raises(ValueError, match="INT64"):
        response_columns(response)


class Refused(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


QUEUE_FULL = Refused(grpc.StatusCode.INTERNAL, 'Model "ai_detector" has no worker to serve inference request.')


def scripted_client(monkeypatch: pytest.MonkeyPatch, outcomes: list) -> tuple[OipGrpcClient, list]:
    """A client whose every call plays the next outcome (an exception to raise, or a response)."""
    client = OipGrpcClient("127.0.0.1:1", authorization=False, backoff=0.001)
    calls = []

    def stub(request, timeout, metadata):
        calls.append(request)
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(client.channel, "unary_unary", lambda *args, **kwargs: stub)
    return client, calls


def test_retriable_rpc_failures_are_retried_and_the_others_are_not(monkeypatch: pytest.MonkeyPatch) -> None:
    live = messages.ServerLiveResponse(live=True)
    client, calls = scripted_client(monkeypatch, [Refused(grpc.StatusCode.UNAVAILABLE, "connection refused"),
                                                  QUEUE_FULL, Refused(grpc.StatusCode.INTERNAL, "Worker died."), live])
    assert client.live() and len(calls) == 4
    client, calls = scripted_client(monkeypatch, [Refused(grpc.StatusCode.PERMISSION_DENIED, "Token Authorization"), live])
    with pytest.raises(grpc.RpcError):
        client.live()
    assert len(calls) == 1
    client, calls = scripted_client(monkeypatch, [QUEUE_FULL] * (client.retries + 1))
    with pytest.raises(grpc.RpcError):
        client.live()
    assert len(calls) == client.retries + 1
    assert not is_retriable_rpc(Refused(grpc.StatusCode.INTERNAL, "something else"))
