"""What the Open Inference Protocol (KServe v2) costs per request against the REST path, in one run.

    python -m loadtest.protocols --model ai_detector_int8 --requests 200

* bare (no server): the handler's own work for batches of 8 one-image requests sent as a raw REST body, as an
  Open Inference JSON request (base64) and as one in Triton's binary extension: ``plan_batch``, the pipeline, the
  answers and their JSON; protocols alternate in blocks, so a noisy machine slows all alike.
* server: one TorchServe with the shipped config; each protocol's client sends the same images one at a time
  (1 user, protocols interleaved in rounds), then 8 users at once for the clients that are thread-safe
  (tritonclient's HTTP client is gevent-based: 1 user only).

Writes protocols.json and protocols.md (ratios against REST, the CPU named).
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import struct
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import requests
import tritonclient.http as tritonhttp

from detector.hardware import cpu_info, cpu_line
from detector.oip import HEADER_LENGTH, output_specs
from detector.paths import REPO
from handlers.batch_plan import plan_batch
from loadtest.bench_model import served_pipeline
from loadtest.images import load_images
from loadtest.sweep import SERVED, STOCK
from ops.client import DetectorClient, read_keys
from ops.oip import OipGrpcClient
from ops.server import start, stop
from ops.torchserve_config import Ports, TorchServeConfig, render_config

BATCH = 8


def oip_json(image: bytes) -> dict[str, Any]:
    return {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(image).decode()]}]}


def oip_binary(image: bytes) -> tuple[bytes, int]:
    """A one-image request in Triton's binary tensor extension: the body and its JSON part's length."""
    raw = struct.pack("<I", len(image)) + image
    header = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    return header + raw, len(header)


class BatchContext:
    """The two things ``plan_batch`` asks of TorchServe's context: per-request headers and request ids."""

    def __init__(self, headers: dict[int, dict[str, str]], size: int) -> None:
        self.headers = headers
        self.request_ids = {i: str(i) for i in range(size)}

    def get_request_header(self, idx: int, key: str) -> str | None:
        return self.headers.get(idx, {}).get(key)


def bare_batches(images: list[bytes]) -> dict[str, list[tuple[list[dict[str, Any]], BatchContext]]]:
    """Batches of 8 one-image requests per protocol, as TorchServe hands them to the handler."""
    groups = [images[i:i + BATCH] for i in range(0, len(images) - BATCH + 1, BATCH)]
    batches: dict[str, list] = {"rest": [], "oip_json": [], "oip_binary": []}
    for group in groups:
        batches["rest"].append(([{"body": image} for image in group], BatchContext({}, len(group))))
        batches["oip_json"].append(([{"body": oip_json(image)} for image in group], BatchContext({}, len(group))))
        binary = [oip_binary(image) for image in group]
        batches["oip_binary"].append(([{"body": body} for body, _ in binary],
                                      BatchContext({i: {HEADER_LENGTH: str(length)} for i, (_, length) in enumerate(binary)},
                                                   len(group))))
    return batches


def measure_bare(artifacts: Path, backend: str, images: list[bytes], rounds: int) -> dict[str, dict[str, float]]:
    """Per protocol, medians over ``rounds`` blocks: ms of handler work per request (``plan_batch``, the pipeline,
    the answers and their JSON) and µs of that spent on the protocol alone (the same without the pipeline)."""
    pipeline = served_pipeline(artifacts, backend, None)
    specs = output_specs(pipeline.metadata.class_names, pipeline.point.domain_threshold is not None)
    batches = bare_batches(images)
    answers = [pipeline.run(requests_).responses for requests_, _ in batches["rest"]]

    def handle(work: list, run_pipeline: bool) -> None:
        for (requests_, context), responses in zip(work, answers):
            plan = plan_batch(requests_, context, True, 32)
            bodies, _ = plan.answers(pipeline.run(plan.items).responses if run_pipeline else responses, "bench",
                                     pipeline.model_version, specs)
            json.dumps(bodies)

    timings: dict[str, dict[str, list[float]]] = {name: {"ms": [], "protocol_us": []} for name in batches}
    for round_index in range(rounds + 1):    # the first round warms up
        for name, work in batches.items():
            requests_count = len(work) * BATCH
            started = time.perf_counter()
            handle(work, run_pipeline=True)
            middle = time.perf_counter()
            for _ in range(20):
                handle(work, run_pipeline=False)
            if round_index:
                timings[name]["ms"].append((middle - started) * 1000 / requests_count)
                timings[name]["protocol_us"].append((time.perf_counter() - middle) * 1e6 / (20 * requests_count))
    return {name: {key: statistics.median(values) for key, values in row.items()} for name, row in timings.items()}


def senders(client: DetectorClient, grpc_target: str, model: str) -> dict[str, Callable[[bytes], Any]]:
    """One call per protocol, each checking that an answer came back."""
    headers = {"Authorization": f"Bearer {read_keys(client.key_file)['inference']}"}
    session = requests.Session()
    triton = tritonhttp.InferenceServerClient(client.inference_url.removeprefix("http://"), network_timeout=60)
    grpc_client = OipGrpcClient(grpc_target, key_file=client.key_file, model=model)

    def rest(image: bytes) -> None:
        assert "label" in client.predict(image, model=model)

    def json_request(image: bytes) -> None:
        response = session.post(f"{client.inference_url}/v2/models/{model}/infer", json=oip_json(image),
                                headers=headers, timeout=60)
        assert response.status_code == 200, response.text

    def binary_request(image: bytes) -> None:
        tensor = tritonhttp.InferInput("image", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([image], dtype=np.object_))
        assert triton.infer(model, [tensor], headers=dict(headers)).as_numpy("label") is not None

    def grpc_request(image: bytes) -> None:
        assert grpc_client.infer([image])[0]["label"]

    return {"rest": rest, "oip_json": json_request, "oip_binary": binary_request, "oip_grpc": grpc_request}


def measure_server(model: str, images: list[bytes], requests_per_protocol: int, rounds: int, ports: Ports,
                   out: Path) -> dict[str, dict[str, float]]:
    """Per protocol: median latency at 1 user (ms) and answers/s with 8 users (thread-safe clients only)."""
    run_dir = Path(tempfile.mkdtemp(prefix="protocols_", dir=out))
    config = render_config(REPO / "config.properties", run_dir / "config.properties", ports)
    try:
        client = start(config, REPO / "model_store", run_dir)
        grpc_target = f"127.0.0.1:{TorchServeConfig.load(config).ports.grpc_inference}"
        calls = senders(client, grpc_target, model)
        for call in calls.values():            # warm every path
            for image in images[:16]:
                call(image)
        latencies: dict[str, list[float]] = {name: [] for name in calls}
        per_round = requests_per_protocol // rounds
        for round_index in range(rounds):
            for name, call in calls.items():
                for image in images[round_index * per_round:(round_index + 1) * per_round]:
                    started = time.perf_counter()
                    call(image)
                    latencies[name].append((time.perf_counter() - started) * 1000)
        results = {name: {"p50_ms_1_user": statistics.median(values),
                          "mean_ms_1_user": statistics.fmean(values)} for name, values in latencies.items()}
        for name in ("rest", "oip_json", "oip_grpc"):
            started = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(calls[name], images[:requests_per_protocol]))
            results[name]["answers_per_s_8_users"] = requests_per_protocol / (time.perf_counter() - started)
        return results
    finally:
        stop(run_dir)


def report(model: str, bare: dict[str, dict[str, float]], served: dict[str, dict[str, float]], cpu: str) -> str:
    names = {"rest": "REST, raw body (`/predictions`)", "oip_json": "Open Inference, JSON + base64 (REST)",
             "oip_binary": "Open Inference, binary extension (REST, tritonclient)", "oip_grpc": "Open Inference, gRPC"}
    lines = [f"# Open Inference Protocol against REST: `{model}`", "", f"CPU: {cpu}. One run; × REST: the ratio to the "
             "REST path's figure in the same run. Bare: the handler's work for batches of 8 one-image requests, no server "
             "(gRPC requests reach the handler as the JSON form).", "",
             "| protocol | handler work per request, bare (ms) | × REST | of it the protocol (µs) "
             "| p50 at 1 user (ms) | × REST | answers/s, 8 users | × REST |", "|---|---|---|---|---|---|---|---|"]
    rest_bare, rest_served = bare["rest"], served["rest"]
    for name, label in names.items():
        row = served[name]
        cells = ([f"{bare[name]['ms']:.2f}", f"{bare[name]['ms'] / rest_bare['ms']:.2f}", f"{bare[name]['protocol_us']:.0f}"]
                 if name in bare else ["—", "—", "—"])
        cells += [f"{row['p50_ms_1_user']:.1f}", f"{row['p50_ms_1_user'] / rest_served['p50_ms_1_user']:.2f}"]
        rate = row.get("answers_per_s_8_users")
        cells += [f"{rate:.1f}", f"{rate / rest_served['answers_per_s_8_users']:.2f}"] if rate else ["—", "—"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ai_detector_int8", choices=[m for m in SERVED if m != STOCK])
    parser.add_argument("--requests", type=int, default=200, help="requests per protocol and measurement")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (bare blocks, 1-user rounds)")
    parser.add_argument("--artifacts", type=Path, default=REPO / "build" / "artifacts")
    parser.add_argument("--ports", default="18280,18281,18282,17270,17271")
    parser.add_argument("--out", type=Path, default=REPO / "loadtest" / "results" / "protocols")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    images = load_images(max(args.requests, 16))
    bare = measure_bare(args.artifacts, SERVED[args.model], images[:64], args.rounds)
    print(f"[protocols] bare ms per request: {bare}", flush=True)
    served = measure_server(args.model, images, args.requests, args.rounds, Ports.from_csv(args.ports), args.out)
    cpu = cpu_info()
    (args.out / "protocols.json").write_text(json.dumps({"model": args.model, "cpu": cpu, "bare_ms_per_request": bare,
                                                         "server": served}, indent=2) + "\n")
    text = report(args.model, bare, served, cpu_line(cpu))
    (args.out / "protocols.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
