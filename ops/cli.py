"""Operator CLI for the running service: models, workers, batching, versions. Reads the key file itself.

    python -m ops.cli models
    python -m ops.cli describe ai_detector [--version all]
    python -m ops.cli scale ai_detector --min 2 --max 4
    python -m ops.cli register ai_detector_v2.mar --batch-size 16 --max-batch-delay 10   # enable_model_api=true only
    python -m ops.cli set-default ai_detector 0.4.5
    python -m ops.cli unregister ai_detector 0.2.0                                        # enable_model_api=true only

Global options (before the command): --inference-url, --management-url, --key-file
(default $AI_DETECTOR_KEY_FILE or run/key_file.json). Output is JSON; --table prints workers as a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import requests

from ops.client import DetectorClient


def worker_table(described: list[dict[str, Any]]) -> str:
    """One line per worker of every described version: the view an operator scans."""
    lines = [f"{'model':<20} {'version':<12} {'batch':>5} {'delay':>5} {'min':>4} {'max':>4} "
             f"{'worker':>7} {'pid':>8} {'status':<10} {'memory MiB':>10}"]
    for entry in described:
        workers = entry.get("workers") or [{}]
        for worker in workers:
            memory = worker.get("memoryUsage")
            lines.append(
                f"{entry['modelName']:<20} {entry['modelVersion']:<12} "
                f"{entry['batchSize']:>5} {entry['maxBatchDelay']:>5} {entry['minWorkers']:>4} {entry['maxWorkers']:>4} "
                f"{worker.get('id', '-'):>7} {worker.get('pid', '-'):>8} {worker.get('status', 'no worker'):<10} "
                f"{(memory or 0) / 2**20:>10.0f}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inference-url", default="http://127.0.0.1:8080")
    parser.add_argument("--management-url", default="http://127.0.0.1:8081")
    parser.add_argument("--key-file", type=Path, default=None)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("models", help="list registered models")
    describe = commands.add_parser("describe", help="versions, batching and workers of a model")
    describe.add_argument("model")
    describe.add_argument("--version", default=None, help="a version, or 'all'")
    describe.add_argument("--table", action="store_true")
    scale = commands.add_parser("scale", help="set min/max workers, synchronously")
    scale.add_argument("model")
    scale.add_argument("--min", type=int, required=True)
    scale.add_argument("--max", type=int, default=None)
    scale.add_argument("--version", default=None)
    register = commands.add_parser("register", help="register an archive from the model store")
    register.add_argument("archive")
    register.add_argument("--batch-size", type=int, default=8)
    register.add_argument("--max-batch-delay", type=int, default=5, help="milliseconds")
    register.add_argument("--workers", type=int, default=1)
    default = commands.add_parser("set-default", help="route unversioned requests to a version")
    default.add_argument("model")
    default.add_argument("version")
    unregister = commands.add_parser("unregister", help="remove a model version")
    unregister.add_argument("model")
    unregister.add_argument("version", nargs="?")
    return parser


def run(args: argparse.Namespace) -> Any:
    client = DetectorClient(args.inference_url, args.management_url, key_file=args.key_file)
    if args.command == "models":
        return client.list_models()
    if args.command == "describe":
        described = client.describe(args.model, args.version)
        return worker_table(described) if args.table else described
    if args.command == "scale":
        client.scale_workers(args.min, args.max, args.model, args.version)
        return client.describe(args.model, args.version)
    if args.command == "register":
        return client.register(args.archive, args.batch_size, args.max_batch_delay, args.workers)
    if args.command == "set-default":
        return client.set_default(args.version, args.model)
    return client.unregister(args.version, args.model)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except requests.HTTPError as error:
        sys.exit(f"[ops] {error.response.status_code}: {error.response.text.strip()}")
    except (requests.ConnectionError, FileNotFoundError) as error:
        sys.exit(f"[ops] {error}")
    print(result if isinstance(result, str) else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
