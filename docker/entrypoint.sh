#!/bin/sh
# Container start: verify the archives, then run TorchServe in the foreground.
# Default (docker compose): config.properties with its loopback HTTP and gRPC addresses rewritten to
# AI_DETECTOR_LISTEN_ADDRESS: 0.0.0.0 on compose's bridge network, where port publishing needs it
# (docker-compose.yml publishes on the host's 127.0.0.1 only), 127.0.0.1 with host networking.
# AI_DETECTOR_TS_CONFIG names a config used as is (Kubernetes ConfigMap, KServe storage layout), and
# AI_DETECTOR_MODEL_STORE another model store (KServe mounts it at /mnt/models/model-store).
set -eu
cd /app/run
MODEL_STORE="${AI_DETECTOR_MODEL_STORE:-/app/model_store}"
# refuse archives whose SHA-256 differs from SHA256SUMS (written by `make build`)
python -m ops.server verify --model-store "$MODEL_STORE"
if [ -n "${AI_DETECTOR_TS_CONFIG:-}" ]; then
  CONFIG="$AI_DETECTOR_TS_CONFIG"
else
  CONFIG=/app/run/config.properties
  LISTEN="${AI_DETECTOR_LISTEN_ADDRESS:-0.0.0.0}"
  sed -e "s#=http://127.0.0.1:#=http://${LISTEN}:#" -e "s#^\(grpc_[a-z]*_address\)=127.0.0.1\$#\1=${LISTEN}#" \
    /app/config.properties > "$CONFIG"
fi
exec torchserve --foreground --ncs --ts-config "$CONFIG" --model-store "$MODEL_STORE" --log-config /app/log4j2.xml
