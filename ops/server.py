"""Start, wait for and stop TorchServe for ai_detector; used by `make serve` and the integration tests.

    python -m ops.server start    # background, loopback only, returns once every model is READY
    python -m ops.server stop
    python -m ops.server verify   # archives against model_store/SHA256SUMS (the container runs it first)

``torchserve --start`` exits 0 even when a model fails to load, so ``start`` polls the
management API until each model has a READY worker and fails with the log tail otherwise.
Archives are checked against ``model_store/SHA256SUMS`` before the server sees them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import requests

from detector.paths import REPO
from export.archive import SUMS_NAME, sha256_file
from ops.client import DetectorClient
from ops.torchserve_config import TorchServeConfig

LOG_CONFIG = REPO / "log4j2.xml"   # INFO-level logging instead of TorchServe's built-in DEBUG


class ServerError(RuntimeError):
    """TorchServe did not come up with every model ready."""


def verify_archives(model_store: Path) -> list[str]:
    """Refuse to serve archives whose SHA-256 differs from the one recorded when they were built."""
    sums_path = model_store / SUMS_NAME
    if not sums_path.exists():
        raise ServerError(f"{sums_path} missing: build the archives with `make build`")
    names = []
    for line in sums_path.read_text().splitlines():
        expected, name = line.split(maxsplit=1)
        if not (model_store / name).is_file():
            raise ServerError(f"{name} is listed in {SUMS_NAME} but missing from {model_store}")
        if sha256_file(model_store / name) != expected:
            raise ServerError(f"{name} does not match its recorded SHA-256: rebuild it with `make build`")
        names.append(name)
    return names


def _private_tmp(run_dir: Path) -> Path:
    return run_dir / "tmp"


def frontend_pid(run_dir: Path) -> int:
    """The Java frontend of the TorchServe started in ``run_dir``, from the pid file in its private temp folder."""
    return int((_private_tmp(run_dir) / ".model_server.pid").read_text().split()[0])


def _environment(run_dir: Path) -> dict[str, str]:
    """A private temp folder keeps TorchServe's pid file and worker sockets per run folder, so servers never collide."""
    env = dict(os.environ)
    tmp = _private_tmp(run_dir)
    tmp.mkdir(parents=True, exist_ok=True)
    env.update(TMPDIR=str(tmp), JAVA_TOOL_OPTIONS=f"-Djava.io.tmpdir={tmp}",
               LOG_LOCATION=str(run_dir / "logs"), METRICS_LOCATION=str(run_dir / "logs"))
    return env


def _torchserve() -> str:
    return str(Path(sys.executable).with_name("torchserve"))


def start(config: Path = REPO / "config.properties", model_store: Path = REPO / "model_store",
          run_dir: Path = REPO / "run", timeout: float = 180.0) -> DetectorClient:
    """Start TorchServe in the background and block until every model in load_models is READY."""
    if shutil.which("java") is None:
        raise ServerError("java not found: TorchServe needs Java 17 (make setup installs it)")
    verify_archives(model_store)
    settings = TorchServeConfig.load(config)   # a malformed file fails here, before a server is started
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "key_file.json").unlink(missing_ok=True)
    with open(run_dir / "torchserve.out", "ab") as console:  # the daemon must not hold our stdout open
        subprocess.run([_torchserve(), "--start", "--ncs", "--ts-config", str(config.resolve()),
                        "--model-store", str(model_store.resolve()), "--log-config", str(LOG_CONFIG)],
                       cwd=run_dir, env=_environment(run_dir), check=True, stdout=console, stderr=console)
    client = DetectorClient(settings.addresses.inference, settings.addresses.management,
                            key_file=run_dir / "key_file.json",
                            authorization=settings.get("disable_token_authorization") != "true")
    wait_ready(client, settings.loaded_models, run_dir, timeout)
    return client


def wait_ready(client: DetectorClient, models: list[str], run_dir: Path, timeout: float) -> None:
    """Block until the management API answers with the key and every model in ``models`` has a READY worker."""
    deadline = time.monotonic() + timeout
    pending = list(models)
    while time.monotonic() < deadline:
        try:
            client.management("GET", "models")
            pending = [m for m in pending
                       if not any(w.get("status") == "READY" for w in client.describe(m)[0].get("workers", []))]
            if not pending:
                return
        except (FileNotFoundError, json.JSONDecodeError, requests.RequestException):
            pass   # no key file yet, one TorchServe is still writing (seen empty in CI), or no answer yet
        time.sleep(1.0)
    raise ServerError(f"TorchServe not ready after {timeout:.0f}s (models pending: {pending})\n{log_tail(run_dir)}")


def log_tail(run_dir: Path, lines: int = 40) -> str:
    logs = []
    for name in ("ts_log.log", "model_log.log"):
        path = run_dir / "logs" / name
        if path.exists():
            logs.append(f"--- {path} ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
    return "\n".join(logs) or f"(no logs in {run_dir / 'logs'})"


def stop(run_dir: Path = REPO / "run") -> None:
    run_dir = run_dir.resolve()
    subprocess.run([_torchserve(), "--stop"], cwd=run_dir, env=_environment(run_dir), check=False)


def curl_example(client: DetectorClient, key_file: Path) -> str:
    return (f"KEY=$(python3 -c \"import json; print(json.load(open('{key_file}'))['inference']['key'])\")\n"
            f"curl -s -H \"Authorization: Bearer $KEY\" -T your_image.jpg {client.inference_url}/predictions/{client.model}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("start", "stop", "verify"))
    parser.add_argument("--config", type=Path, default=REPO / "config.properties")
    parser.add_argument("--model-store", type=Path, default=REPO / "model_store")
    parser.add_argument("--run-dir", type=Path, default=REPO / "run")
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args(argv)
    if args.action == "stop":
        stop(args.run_dir)
        return
    if args.action == "verify":   # the container's entry point: one clear line instead of a traceback
        try:
            names = verify_archives(args.model_store)
        except ServerError as exc:
            sys.exit(f"[verify] REFUSING TO START: {exc}")
        print(f"[verify] {len(names)} archives match {args.model_store / SUMS_NAME}: {', '.join(names)}")
        return
    try:
        client = start(args.config, args.model_store, args.run_dir, args.timeout)
    except ServerError as exc:
        stop(args.run_dir)
        sys.exit(f"[serve] FAILED: {exc}")
    key_file = args.run_dir.resolve() / "key_file.json"
    print(f"[serve] TorchServe is up on 127.0.0.1 (logs: {args.run_dir / 'logs'}, keys: {key_file}).\n"
          f"[serve] Try it:\n{curl_example(client, key_file)}\n[serve] Stop it with: make stop")


if __name__ == "__main__":
    main()
