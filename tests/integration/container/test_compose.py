"""The container path as an operator runs it: the image built from docker/Dockerfile, `docker compose up`
(with the host-network override, since the engine here has no bridge), answers equal to a host-run server's,
a real Prometheus scraping it, load beyond capacity, a restart after TorchServe dies, and a clean `down`.
Figures go to build/reports/container.{json,md} (`make container-test` prints them)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import yaml

from detector.hardware import cpu_info, cpu_line
from loadtest import overload
from monitoring.dashboard import render
from ops.client import DetectorClient
from ops.torchserve_config import TorchServeConfig
from tests.conftest import MODEL_STORE, REPO
from tests.integration.container.conftest import COMPOSE_BINARY, IMAGE, PROJECT, STATE, compose, docker, wait_for
from tests.integration.conftest import start_server, stop

pytestmark = pytest.mark.container

REPORT: dict = {"cpu": cpu_info()}
REPORTS = REPO / "build" / "reports"
MODELS = tuple(TorchServeConfig.load(REPO / "config.properties").models)
PORTS = {"inference": 8080, "management": 8081, "metrics": 8082}
HEALTHY_BOUND_S = 600     # image start-up, three models loaded, then the healthcheck's 30 s interval
RECOVERY_BOUND_S = 300
BURST = 96                # simultaneous requests to ai_detector: 4x what its queue (16) and a batch (8) hold


def container_id() -> str:
    return compose("ps", "-q", "detector").stdout.strip()


def health() -> str:
    return docker("inspect", "--format", "{{if .State.Health}}{{.State.Health.Status}}{{end}}", container_id()).stdout.strip()


def container_client(tmp_path: Path) -> DetectorClient:
    """A client with the keys TorchServe wrote inside the container (new ones at every start)."""
    key_file = tmp_path / "container_keys.json"
    key_file.write_text(compose("exec", "-T", "detector", "cat", "/app/run/key_file.json").stdout)
    return DetectorClient(f"http://127.0.0.1:{PORTS['inference']}", f"http://127.0.0.1:{PORTS['management']}",
                          key_file=key_file)


def answers(client: DetectorClient, images: list[bytes]) -> list[dict]:
    """Each image raw, as multipart and as base64 JSON, to every model, one at a time."""
    headers = client._headers("inference")
    result = []
    for model in MODELS:
        url = f"{client.inference_url}/predictions/{model}"
        for image in images:
            raw = client.predict(image, model=model)
            multipart = requests.post(url, files={"data": ("x.jpg", image, "image/jpeg")}, headers=headers, timeout=60)
            as_json = requests.post(url, json={"image": base64.b64encode(image).decode()}, headers=headers, timeout=60)
            assert multipart.status_code == as_json.status_code == 200, (multipart.text, as_json.text)
            result.append({"model": model, "raw": raw, "multipart": multipart.json(), "base64": as_json.json()})
    return result


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def readme_container_block() -> str:
    """The README's no-registry block, with this test's compose project name (a user's own project stays)."""
    block = re.search(r"<!-- readme-container -->\s*```bash\n(.*?)```", (REPO / "README.md").read_text(),
                      flags=re.DOTALL).group(1)
    return block.replace("docker compose ", f"{COMPOSE_BINARY} --project-name {PROJECT} ")


@pytest.fixture(scope="module")
def service(image: dict, tmp_path_factory: pytest.TempPathFactory):
    """The README's container block, run as an operator runs it (its `up --wait` returns once healthy);
    `down -v` at the end."""
    busy = [port for port in (*PORTS.values(), 7070, 7071) if port_in_use(port)]
    if busy:
        pytest.fail(f"ports {busy} on 127.0.0.1 are taken: the container service needs config.properties' ports")
    REPORT["image"] = image
    started = time.monotonic()
    block = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_container_block()], cwd=REPO,
                           capture_output=True, text=True, timeout=HEALTHY_BOUND_S + 1800)
    assert block.returncode == 0, block.stdout[-3000:] + block.stderr[-3000:]
    assert health() == "healthy"
    assert set(json.loads(block.stdout[block.stdout.index("{"):])) >= {"inference", "management"}
    REPORT["healthy_after_s"] = round(time.monotonic() - started, 1)
    yield tmp_path_factory.mktemp("container")
    compose("down", "-v", "--remove-orphans", check=False)
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "container.json").write_text(json.dumps(REPORT, indent=2) + "\n")
    (REPORTS / "container.md").write_text(summary(REPORT))


def test_image_runs_as_a_non_root_user_without_build_tools(image: dict) -> None:
    probe = docker("run", "--rm", "--network", "host", "--entrypoint", "sh", IMAGE, "-c",
                   "id -u; for tool in uv pip gcc cc; do command -v $tool || true; done; ls /opt/uv 2>&1 || true")
    lines = probe.stdout.split()
    assert lines[0] == "10001", probe.stdout
    assert not any(line.endswith(("/uv", "/pip", "/gcc", "/cc")) for line in lines[1:]), probe.stdout
    assert image["size_bytes"] > 0 and image["build_seconds"] >= 0


def test_tampered_archive_keeps_the_container_from_starting(image: dict) -> None:
    store = STATE / "tampered_store"   # under build/, readable by the container's user (pytest's tmp is 0700)
    shutil.rmtree(store, ignore_errors=True)
    shutil.copytree(MODEL_STORE, store)
    os.chmod(store, 0o755)
    tampered = store / "ai_detector_int8.mar"
    data = bytearray(tampered.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    result = docker("run", "--rm", "--network", "host", "-v", f"{store}:/app/model_store:ro", IMAGE,
                    timeout=120, check=False)
    shutil.rmtree(store)
    assert result.returncode != 0
    assert "REFUSING TO START: ai_detector_int8.mar does not match its recorded SHA-256" in result.stderr, result.stderr


def test_compose_service_answers_exactly_like_the_host_run_server(service: Path, cifake_images) -> None:
    images = [data for _, data in cifake_images[::8]]
    from_container = answers(container_client(service), images)
    (service / "host").mkdir()
    host = start_server(service / "host")
    try:
        from_host = answers(host, images)
    finally:
        stop(service / "host")
    for container_answer, host_answer in zip(from_container, from_host):
        for kind in ("raw", "multipart", "base64"):
            got, expected = container_answer[kind], host_answer[kind]
            assert got["label"] == expected["label"], (container_answer["model"], kind)
            for label, probability in expected["probabilities"].items():
                assert abs(got["probabilities"][label] - probability) <= 1e-6, (container_answer["model"], kind)
    REPORT["compared_answers"] = len(from_container) * 3


def test_container_user_is_not_root_and_the_model_store_is_read_only(service: Path) -> None:
    assert compose("exec", "-T", "detector", "id", "-u").stdout.strip() == "10001"
    write = compose("exec", "-T", "detector", "sh", "-c", "touch /app/model_store/probe", check=False)
    assert write.returncode != 0 and "Read-only file system" in write.stderr
    mounts = json.loads(docker("inspect", "--format", "{{json .Mounts}}", container_id()).stdout)
    store = next(m for m in mounts if m["Destination"] == "/app/model_store")
    assert store["RW"] is False


@pytest.fixture(scope="module")
def prometheus(service: Path):
    """Debian's Prometheus on a free loopback port, scraping the service with monitoring/prometheus.yml
    (its targets are compose-network names: pointed at the host's metrics port here)."""
    config = yaml.safe_load((REPO / "monitoring" / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "2s"
    for scrape in config["scrape_configs"]:
        scrape["static_configs"] = [{"targets": [f"127.0.0.1:{PORTS['metrics']}"]}]
    path = service / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    process = subprocess.Popen([shutil.which("prometheus") or "/usr/bin/prometheus", f"--config.file={path}",
                                f"--storage.tsdb.path={service / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=open(service / "prometheus.log", "w"))
    url = f"http://127.0.0.1:{port}"

    def target_up():
        try:
            targets = requests.get(f"{url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        except (requests.ConnectionError, ValueError):
            return False
        return targets and all(t["health"] == "up" for t in targets)

    wait_for(target_up, 120, "Prometheus to scrape the service's metrics port")
    yield url
    process.terminate()
    process.wait(timeout=30)


def test_overload_sheds_load_with_fast_503s_and_keeps_goodput(service: Path, prometheus: str) -> None:
    client = container_client(service)
    report = overload.run(client.inference_url, client.key_file, "ai_detector", factor=4, seconds=30,
                          step_seconds=8, out=service / "overload")
    REPORT["overload"] = report
    statuses = report["overload"]["statuses"]
    assert set(statuses) <= {"200", "503"}, statuses   # overload answers "try later", never an error
    assert report["overload"]["goodput_vs_saturation"] >= 0.5
    if "503" in statuses:   # a full queue answers at once: faster than a prediction waiting in it
        assert statuses["503"]["p50_ms"] < statuses["200"]["p50_ms"]


def burst(client: DetectorClient, image: bytes, count: int) -> list[tuple[int, float]]:
    """``count`` simultaneous requests, no retries: more than one model's queue holds, so some get 503.
    Returns (status, seconds) per request."""
    url, headers = f"{client.inference_url}/predictions/ai_detector", client._headers("inference")

    def post(_: int) -> tuple[int, float]:
        started = time.monotonic()
        status = requests.post(url, data=image, headers=headers, timeout=120).status_code
        return status, time.monotonic() - started

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(post, range(count)))


def test_prometheus_returns_data_for_every_dashboard_expression(service: Path, prometheus: str, cifake_images) -> None:
    client = container_client(service)
    for _, image in cifake_images[:8]:
        client.predict(image)
    bad = requests.post(f"{client.inference_url}/predictions/ai_detector", data=b"not an image",
                        headers=client._headers("inference"), timeout=30)
    assert bad.status_code == 415   # not an image: an input error (InputErrors, Requests4XX)
    answered = burst(client, cifake_images[0][1], BURST)
    assert {status for status, _ in answered} == {200, 503}
    rejected = sorted(seconds for status, seconds in answered if status == 503)
    served = sorted(seconds for status, seconds in answered if status == 200)
    REPORT["burst"] = {"requests": BURST, "answered_503": len(rejected), "answered_200": len(served),
                       "p50_503_ms": round(1000 * rejected[len(rejected) // 2]),
                       "p50_200_ms": round(1000 * served[len(served) // 2])}
    expressions = [target["expr"] for panel in json.loads(render())["panels"] for target in panel["targets"]]

    def missing() -> list[str]:
        empty = []
        for expression in expressions:
            body = requests.get(f"{prometheus}/api/v1/query", params={"query": expression}, timeout=10).json()
            assert body["status"] == "success", (expression, body)
            if not body["data"]["result"]:
                empty.append(expression)
        return empty

    wait_for(lambda: not missing(), 90, "every dashboard expression to return data", interval=3)
    REPORT["prometheus_expressions"] = len(expressions)


def test_killed_torchserve_is_restarted_by_compose_and_answers_again(service: Path, cifake_images) -> None:
    restarts_before = int(docker("inspect", "--format", "{{.RestartCount}}", container_id()).stdout)
    killed = time.monotonic()
    compose("exec", "-T", "detector", "python", "-c",
            "import os; [os.kill(int(p), 9) for p in os.listdir('/proc') if p.isdigit() and "
            "open(f'/proc/{p}/cmdline', 'rb').read().split(b'\\0')[0].endswith(b'java')]", check=False)
    image = cifake_images[0][1]

    def answered():
        try:
            return container_client(service).predict_response(image).status_code == 200
        except (subprocess.CalledProcessError, requests.ConnectionError, FileNotFoundError, KeyError, ValueError):
            return False

    wait_for(answered, RECOVERY_BOUND_S, "the restarted container to answer a prediction", interval=0.5)
    REPORT["recovery_s"] = round(time.monotonic() - killed, 1)
    assert int(docker("inspect", "--format", "{{.RestartCount}}", container_id()).stdout) == restarts_before + 1


def test_compose_down_removes_everything_it_started(service: Path) -> None:
    compose("down", "-v", "--remove-orphans")
    label = f"label=com.docker.compose.project={PROJECT}"
    assert docker("ps", "-aq", "--filter", label).stdout.strip() == ""
    assert docker("volume", "ls", "-q", "--filter", label).stdout.strip() == ""


def summary(report: dict) -> str:
    lines = ["# Container run (tests/integration/container)", "", f"On {cpu_line(report['cpu'])}.", ""]
    if "image" in report:
        lines.append(f"- image {report['image']['image']}: {report['image']['size_bytes'] / 1e9:.2f} GB, "
                     f"built in {report['image']['build_seconds']} s")
    for key, text in (("healthy_after_s", "healthy after the README block's `docker compose up -d --wait`: {} s"),
                      ("compared_answers", "answers equal to the host-run server's: {} (raw, multipart, base64)"),
                      ("prometheus_expressions", "dashboard expressions answered through Prometheus: {}"),
                      ("recovery_s", "TorchServe killed inside the container -> answering again: {} s")):
        if key in report:
            lines.append("- " + text.format(report[key]))
    if "burst" in report:
        burst_figures = report["burst"]
        lines.append(f"- {burst_figures['requests']} simultaneous requests to ai_detector: "
                     f"{burst_figures['answered_200']} x 200 (p50 {burst_figures['p50_200_ms']} ms), "
                     f"{burst_figures['answered_503']} x 503 queue full (p50 {burst_figures['p50_503_ms']} ms)")
    if "overload" in report:
        lines += ["", overload.summary(report["overload"])]
    return "\n".join(lines) + "\n"
