#!/bin/sh
# Inside the container TorchServe must listen on the container's interface for port publishing to work;
# docker-compose.yml publishes the ports on the host's 127.0.0.1 only. gRPC stays on the container's loopback.
set -eu
cd /app/run
# refuse archives whose SHA-256 differs from model_store/SHA256SUMS (written by `make build`)
python -c "from pathlib import Path; from ops.server import verify_archives; verify_archives(Path('/app/model_store'))"
sed 's#=http://127.0.0.1:#=http://0.0.0.0:#' /app/config.properties > /app/run/config.properties
exec torchserve --foreground --ncs --ts-config /app/run/config.properties --model-store /app/model_store
