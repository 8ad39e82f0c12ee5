"""The Open Inference Protocol (KServe v2) on the shared TorchServe, called by clients the project did not write
(tritonclient over HTTP; tritonclient's generated gRPC messages through ops.oip) and compared with the REST path:
the same answers, the same refusals, the same key, and TorchServe 0.12's gaps as the README states them."""

from __future__ import annotations

import ast
import base64
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as tritongrpc
import tritonclient.http as tritonhttp
from tritonclient.utils import InferenceServerException

from detector.metadata import ModelMetadata
from detector.oip import ERROR_LABEL, output_specs, read_rows
from ops.client import ImageRefused, read_keys
from ops.oip import OipGrpcClient
from ops.torchserve_config import TorchServeConfig
from tests.conftest import MODEL_DIR, REPO
from tests.input_battery import png_declaring
from tests.integration.test_torchserve import _readme_block

OUTPUT_NAMES = [spec.name for spec in output_specs(ModelMetadata.load(MODEL_DIR).class_names, domain_gate=True)]


@pytest.fixture(scope="module")
def endpoints(server):
    """(REST client, tritonclient over HTTP, ops.oip over gRPC, inference key headers) for the shared server."""
    client, run_dir = server
    ports = TorchServeConfig.load(run_dir / "config.properties").ports
    triton = tritonhttp.InferenceServerClient(client.inference_url.removeprefix("http://"), network_timeout=60)
    grpc_client = OipGrpcClient(f"127.0.0.1:{ports.grpc_inference}", key_file=client.key_file)
    yield client, triton, grpc_client, {"Authorization": f"Bearer {read_keys(client.key_file)['inference']}"}
    triton.close()
    grpc_client.close()


def triton_rows(triton: tritonhttp.InferenceServerClient, images: list[bytes], headers: dict[str, str],
                binary: bool = True, model: str = "ai_detector") -> list[dict]:
    """One request through tritonclient: raw bytes in its binary extension (its default), or base64 text in JSON."""
    tensor = tritonhttp.InferInput("image", [len(images)], "BYTES")
    if binary:
        tensor.set_data_from_numpy(np.array(images, dtype=np.object_))
    else:
        tensor.set_data_from_numpy(np.array([base64.b64encode(i) for i in images], dtype=np.object_), binary_data=False)
    result = triton.infer(model, [tensor], headers=dict(headers))   # tritonclient writes its binary header into the dict
    return read_rows({name: result.as_numpy(name).tolist() for name in OUTPUT_NAMES})


def assert_same_answer(row: dict, rest: dict) -> None:
    assert row["label"] == rest["label"]
    assert row["p_fake"] == pytest.approx(rest["probabilities"]["FAKE"], abs=1e-4)
    assert row["p_real"] == pytest.approx(rest["probabilities"]["REAL"], abs=1e-4)
    assert row["domain_score"] == pytest.approx(rest["domain_score"], abs=1e-4)
    assert row["abstained_reason"] == rest.get("abstained", {}).get("reason", "")
    assert row["leaning"] == rest.get("abstained", {}).get("leaning", rest["label"])
    assert row["error"] == {}


def test_triton_http_and_grpc_answer_as_the_rest_path(endpoints, cifake_images) -> None:
    """A fixed sample (10 REAL, 10 FAKE), each image through REST, OIP over HTTP (binary and JSON) and OIP over
    gRPC, then all of them in one OIP request per protocol; the int8 archive answers too."""
    client, triton, grpc_client, headers = endpoints
    images = [data for _, data in cifake_images[10:30]]
    rest = [client.predict(image) for image in images]
    assert {r["label"] for r in rest} >= {"REAL", "FAKE"}
    for image, answer in zip(images, rest):
        assert_same_answer(triton_rows(triton, [image], headers)[0], answer)
        assert_same_answer(grpc_client.infer([image])[0], answer)
    for rows in (triton_rows(triton, images, headers), triton_rows(triton, images, headers, binary=False),
                 grpc_client.infer(images)):
        for row, answer in zip(rows, rest, strict=True):
            assert_same_answer(row, answer)
    int8 = triton_rows(triton, images[:4], headers, model="ai_detector_int8")
    for row, image in zip(int8, images[:4]):
        assert_same_answer(row, client.predict(image, model="ai_detector_int8"))


def refusal_cases(valid: bytes) -> dict[str, bytes]:
    return {"not an image": b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "truncated": valid[: len(valid) // 2],
            "too large": png_declaring(30000, 30000), "empty": b""}


def test_refused_images_raise_the_same_typed_errors_over_every_protocol(endpoints, cifake_images) -> None:
    """The REST path's status and type for each bad image: raised by ops.client over HTTP, by ops.oip over gRPC
    (where TorchServe answers status OK), and by tritonclient as the request's HTTP status."""
    client, triton, grpc_client, headers = endpoints
    for case, data in refusal_cases(cifake_images[0][1]).items():
        with pytest.raises(ImageRefused) as over_rest:
            client.predict(data)
        with pytest.raises(ImageRefused) as over_grpc:
            grpc_client.predict(data)
        with pytest.raises(InferenceServerException) as over_triton:
            triton_rows(triton, [data], headers)
        refused = over_rest.value
        assert (over_grpc.value.status, over_grpc.value.kind) == (refused.status, refused.kind), case
        assert over_triton.value.status() == str(refused.status), case
        assert refused.kind in over_triton.value.message(), case
        assert refused.status in (400, 413, 415), case


def oip_json_rows(client, images: list[bytes], headers: dict[str, str]) -> list[dict]:
    """One JSON request with plain requests (tritonclient's HTTP client is gevent-based: one thread only)."""
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(images)],
                        "data": [base64.b64encode(image).decode() for image in images]}]}
    response = requests.post(f"{client.inference_url}/v2/models/ai_detector/infer", json=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    return read_rows({output["name"]: output["data"] for output in response.json()["outputs"]})


def test_a_bad_image_keeps_its_row_and_fails_neither_its_request_nor_the_batch(endpoints, cifake_images) -> None:
    """One request of two good images around a bad one answers 200 with the bad row marked, and concurrent requests
    batched with it (plain REST and OIP over HTTP and gRPC) are all answered."""
    client, triton, grpc_client, headers = endpoints
    good = [data for _, data in cifake_images[:2]]
    mixed = [good[0], b"not an image", good[1]]
    expected = client.predict(good[0])
    assert [row["label"] == ERROR_LABEL for row in triton_rows(triton, mixed, headers)] == [False, True, False]

    def send(index: int) -> list[dict]:
        if index % 3 == 0:
            return oip_json_rows(client, mixed, headers)
        if index % 3 == 1:
            return grpc_client.infer(mixed)
        return [client.predict(good[index % 2])]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(24)))
    for index, rows in enumerate(answers):
        if index % 3 == 2:
            assert rows[0]["label"] in ("REAL", "FAKE", "UNCERTAIN")
            continue
        assert [row["label"] == ERROR_LABEL for row in rows] == [False, True, False]
        assert rows[1]["error"]["type"] == "UnsupportedFormat" and rows[1]["p_fake"] == 0.0
        assert_same_answer(rows[0], expected)


def test_malformed_requests_are_refused_as_a_whole(endpoints, cifake_images) -> None:
    client, triton, grpc_client, headers = endpoints
    url = f"{client.inference_url}/v2/models/ai_detector/infer"
    image = base64.b64encode(cifake_images[0][1]).decode()
    cases = {400: [{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [0], "data": []}]},
                   {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1], "data": [0.5]}]},
                   {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": [image]}]}],
             413: [{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [33], "data": [image] * 33}]}]}
    for status, bodies in cases.items():
        for body in bodies:
            response = requests.post(url, json=body, headers=headers, timeout=60)
            assert response.status_code == status, response.text
            assert response.json()["error"] and response.json()["outputs"][0]["name"] == "error"
    with pytest.raises(ImageRefused) as too_many:
        grpc_client.infer([cifake_images[0][1]] * 33)
    assert too_many.value.status == 413


def test_the_inference_key_is_required_on_every_open_inference_endpoint(endpoints, cifake_images) -> None:
    client, triton, grpc_client, headers = endpoints
    image = cifake_images[0][1]
    for wrong in ({}, {"Authorization": "Bearer not-the-key"},
                  {"Authorization": f"Bearer {read_keys(client.key_file)['management']}"}):
        with pytest.raises(InferenceServerException) as refused:
            triton_rows(triton, [image], wrong)
        assert "token" in refused.value.message().lower()
        for path in ("v2/health/ready", "v2/health/live", "v2"):
            response = requests.get(f"{client.inference_url}/{path}", headers=wrong, timeout=30)
            assert response.status_code in (400, 401, 403) and "token" in response.text.lower(), path
    keyless = OipGrpcClient(grpc_client.target, authorization=False)
    for call in (lambda: keyless.infer([image]), keyless.live, keyless.ready):
        with pytest.raises(grpc.RpcError) as denied:
            call()
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    keyless.close()
    assert triton_rows(triton, [image], headers)[0]["label"] != ERROR_LABEL
    assert grpc_client.live() and grpc_client.infer([image])[0]["label"] != ERROR_LABEL


def test_readiness_and_metadata_where_torchserve_gives_them(endpoints) -> None:
    """What the README says a caller uses: gRPC ModelReady and the management API's customized describe; and the
    gaps it names: REST readiness answers true whatever the models, REST model metadata is not routed, gRPC model
    metadata names no tensors, and stock gRPC clients are not answered (TorchServe's own proto package)."""
    client, triton, grpc_client, headers = endpoints
    assert grpc_client.ready() and grpc_client.ready("ai_detector_int8")
    with pytest.raises(grpc.RpcError) as unknown:
        grpc_client.ready("no_such_model")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    described = client.management("GET", "models/ai_detector", customized="true").json()[0]
    metadata = described["customizedMetadata"]   # TorchServe parses the handler's JSON into the description
    assert [o["name"] for o in metadata["outputs"]] == OUTPUT_NAMES and metadata["inputs"][0]["name"] == "image"
    assert requests.get(f"{client.inference_url}/v2/health/ready", headers=headers, timeout=30).json() == {"ready": True}
    assert requests.get(f"{client.inference_url}/v2/models/ai_detector", headers=headers, timeout=30).status_code == 404
    from tritonclient.grpc import service_pb2 as messages
    empty = grpc_client.call("ModelMetadata", messages.ModelMetadataRequest(name="ai_detector"))
    assert empty.name == "ai_detector" and not empty.inputs and not empty.outputs
    stock = tritongrpc.InferenceServerClient(grpc_client.target)
    with pytest.raises(InferenceServerException) as unimplemented:
        stock.is_server_live(headers={"authorization": headers["Authorization"]})   # gRPC metadata keys are lowercase
    assert "UNIMPLEMENTED" in str(unimplemented.value.status())
    stock.close()


def test_readme_open_inference_examples_work(endpoints, server, cifake_images, tmp_path: Path) -> None:
    client, triton, grpc_client, headers = endpoints
    _, run_dir = server
    image = tmp_path / "image.jpg"
    image.write_bytes(cifake_images[0][1])
    expected = client.predict(image)
    for marker in ("readme-oip-http", "readme-oip-grpc"):
        code = (_readme_block(marker).replace("run/key_file.json", str(run_dir / "key_file.json"))
                .replace("127.0.0.1:8080", client.inference_url.removeprefix("http://"))
                .replace("127.0.0.1:7070", grpc_client.target)
                .replace("image.jpg", str(image)))
        output = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-c", code], capture_output=True, text=True,
                                timeout=120, cwd=REPO)
        assert output.returncode == 0, (marker, output.stderr)
        printed = ast.literal_eval(output.stdout.strip().splitlines()[-1])
        assert printed["label"] == [expected["label"]], marker
        assert printed["p_fake"][0] == pytest.approx(expected["probabilities"]["FAKE"], abs=1e-4), marker
