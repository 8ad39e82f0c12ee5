#!/bin/sh
# Container start: verify the archives, then run TorchServe in the foreground.
# Default (docker compose): config.properties with its loopback addresses rewritten to the container's
# interface, since port publishing needs it; docker-compose.yml publishes on the host's 127.0.0.1 only.
# AI_DETECTOR_TS_CONFIG names a config used as is (Kubernetes ConfigMap, KServe storage layout), and
# AI_DETECTOR_MODEL_STORE another model store (KServe mounts it at /mnt/models/model-store).
set -eu
cd /app/run
MODEL_STORE="${AI_DETECTOR_MODEL_STORE:-/app/model_store}"
# refuse archives whose SHA-256 differs from SHA256SUMS (written by `make build`)
python -c "import sys; from pathlib import Path; from ops.server import verify_archives; verify_archives(Path(sys.argv[1]))" "$MODEL_STORE"
if [ -n "${AI_DETECTOR_TS_CONFIG:-}" ]; then
  CONFIG="$AI_DETECTOR_TS_CONFIG"
else
  CONFIG=/app/run/config.properties
  sed 's#=http://127.0.0.1:#=http://0.0.0.0:#' /app/config.properties > "$CONFIG"
fi
exec torchserve --foreground --ncs --ts-config "$CONFIG" --model-store "$MODEL_STORE" --log-config /app/log4j2.xml
