"""The container toolchain for tests/integration/container: engine started (and stopped again) by
scripts/container_engine.sh, the image built once, `docker compose` with the host-network override."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from detector.metadata import ModelMetadata
from tests.conftest import MODEL_DIR, REPO

ENGINE = REPO / "scripts" / "container_engine.sh"
STATE = REPO / "build" / "container"
COMPOSE_BINARY = REPO / ".venv" / "lib" / "python3.11" / "site-packages" / "compose" / "docker-compose"
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.hostnet.yml")
PROJECT = "aidetector-test"
IMAGE = f"ai-detector:{ModelMetadata.load(MODEL_DIR).version}"


def engine(action: str, timeout: float = 1800) -> None:
    subprocess.run(["bash", str(ENGINE), action], cwd=REPO, check=True, timeout=timeout)


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=check)


def compose(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    command = [str(COMPOSE_BINARY), "--project-name", PROJECT, "--project-directory", str(REPO)]
    for name in COMPOSE_FILES:
        command += ["-f", str(REPO / name)]
    return subprocess.run([*command, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=check)


def wait_for(condition, timeout: float, what: str, interval: float = 1.0):
    """Poll ``condition()`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="session")
def image() -> dict:
    """The engine (installed and started where missing), the base image and the image; stops the engine at the end."""
    if shutil.which("apt-get") is None:
        pytest.skip("the container tests install Debian's docker.io: not a Debian machine")
    engine("install")
    engine("start")
    try:
        engine("base")
        engine("build")
        yield json.loads((STATE / "build.json").read_text())
    finally:
        compose("down", "-v", "--remove-orphans", check=False)
        engine("stop")
