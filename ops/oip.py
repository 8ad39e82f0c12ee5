"""Open Inference Protocol (KServe v2) client over gRPC for the served detector; reads the key file like
``ops.client``.

    from ops.oip import OipGrpcClient
    print(OipGrpcClient().predict("cat.jpg"))   # {"label": "REAL", "p_fake": 0.01, ...}

TorchServe 0.12 serves the protocol's ``GRPCInferenceService`` under its own proto package
(``org.pytorch.serve.grpc.openinference``, pytorch/serve#3394), so a stock Triton or KServe gRPC client, which calls
``inference.GRPCInferenceService``, is answered UNIMPLEMENTED. The messages are the standard ones: this client sends
tritonclient's generated messages to TorchServe's service path. TorchServe forwards no per-request status over gRPC:
an image the server refuses arrives with status OK, its JSON error in the ``error`` output, and this client raises
``ops.client.ImageRefused`` for it, as ``DetectorClient`` does over HTTP. Inputs travel in ``contents.bytes_contents``
(TorchServe 0.12 ignores ``raw_input_contents``) and outputs come back in ``contents``, BYTES elements as JSON text.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import grpc
from tritonclient.grpc import service_pb2 as messages

from detector.oip import INPUT_NAME, ProtocolError, read_rows
from ops.client import BACKOFF_S, RETRIES, ImageRefused, backoff_delay, read_keys

TORCHSERVE_SERVICE = "/org.pytorch.serve.grpc.openinference.GRPCInferenceService/"
MAX_MESSAGE_BYTES = 25 * 1024 * 1024   # config.properties max_request_size (24 MiB) and a margin


def is_retriable_rpc(error: grpc.RpcError) -> bool:
    """What a retry may turn into an answer, as ``ops.client.is_retriable`` over HTTP: the server unreachable (a
    restart), its queue full ("has no worker to serve inference request") or the batch's worker lost."""
    details = error.details() or ""
    return error.code() == grpc.StatusCode.UNAVAILABLE or (
        error.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
        and ("no worker to serve" in details or "Worker died" in details))


class OipGrpcClient:
    """ModelInfer, ModelReady and ServerLive on TorchServe's gRPC inference port, with the inference key; retriable
    failures are retried ``retries`` times with ``ops.client``'s jittered backoff."""

    def __init__(self, target: str = "127.0.0.1:7070", key_file: Path | None = None, model: str = "ai_detector",
                 timeout: float = 60.0, authorization: bool = True, retries: int = RETRIES,
                 backoff: float = BACKOFF_S) -> None:
        self.target = target
        self.channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                                                              ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
        self.key_file = key_file
        self.model = model
        self.timeout = timeout
        self.authorization = authorization
        self.retries = retries
        self.backoff = backoff
        self.stubs: dict[str, Any] = {}

    def close(self) -> None:
        self.channel.close()

    def call(self, method: str, request: Any) -> Any:
        """One unary call of TorchServe's GRPCInferenceService; ``grpc.RpcError`` for a refused call (no key:
        PERMISSION_DENIED, unknown model: NOT_FOUND)."""
        stub = self.stubs.get(method)
        if stub is None:   # one per method and channel, not per call
            stub = self.stubs[method] = self.channel.unary_unary(
                TORCHSERVE_SERVICE + method, request_serializer=type(request).SerializeToString,
                response_deserializer=getattr(messages, f"{method}Response").FromString)
        attempt = 0
        while True:
            metadata = ([("authorization", f"Bearer {read_keys(self.key_file)['inference']}")]
                        if self.authorization else [])
            try:
                return stub(request, timeout=self.timeout, metadata=metadata)
            except grpc.RpcError as error:
                if attempt >= self.retries or not is_retriable_rpc(error):
                    raise
            time.sleep(backoff_delay(attempt, self.backoff))
            attempt += 1

    def infer(self, images: list[bytes | str | Path], model: str | None = None, version: str | None = None,
              request_id: str = "") -> list[dict[str, Any]]:
        """One ModelInfer request for ``images``: per image, in order, its outputs by name (``error``: the refusal,
        {} where it was answered). Raises ``ImageRefused`` where the whole request was refused."""
        files = [image if isinstance(image, bytes) else Path(image).read_bytes() for image in images]
        tensor = messages.ModelInferRequest.InferInputTensor(name=INPUT_NAME, datatype="BYTES", shape=[len(files)])
        tensor.contents.bytes_contents.extend(files)
        request = messages.ModelInferRequest(model_name=model or self.model, model_version=version or "",
                                             id=request_id, inputs=[tensor])
        rows = read_rows(response_columns(self.call("ModelInfer", request)))
        if rows and "label" not in rows[0]:   # only the error tensor: the request itself was refused
            raise ImageRefused.of(rows[0]["error"]) or ProtocolError(str(rows[0]["error"]))
        return rows

    def predict(self, image: bytes | str | Path, model: str | None = None, version: str | None = None) -> dict[str, Any]:
        """One image's outputs by name; raises ``ImageRefused`` where the server refuses it."""
        row = self.infer([image], model, version)[0]
        refused = ImageRefused.of(row.pop("error"))
        if refused is not None:
            raise refused
        return row

    def ready(self, model: str | None = None, version: str | None = None) -> bool:
        """True once the model has its minimum number of healthy workers (TorchServe's gRPC ModelReady; its REST
        /v2/health/ready answers true whatever the models' state)."""
        request = messages.ModelReadyRequest(name=model or self.model, version=version or "")
        return self.call("ModelReady", request).ready

    def live(self) -> bool:
        return self.call("ServerLive", messages.ServerLiveRequest()).live


def response_columns(response: Any) -> dict[str, list[Any]]:
    """A ModelInferResponse's outputs by name, values in order: TorchServe 0.12 writes every output into
    ``contents`` and each BYTES element as the JSON text of its value (``"REAL"`` with the quotes)."""
    columns = {}
    for output in response.outputs:
        if output.datatype == "BYTES":
            columns[output.name] = [json.loads(element) for element in output.contents.bytes_contents]
        elif output.datatype == "FP32":
            columns[output.name] = list(output.contents.fp32_contents)
        else:
            raise ValueError(f"unexpected output {output.name} of type {output.datatype}")
    return columns
