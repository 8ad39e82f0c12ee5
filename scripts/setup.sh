#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian machine with Python 3.11:
# uv (from PyPI), Java 17 for TorchServe (apt, only where missing), then the locked environment.
set -euo pipefail
cd "$(dirname "$0")/.."
export UV_PYTHON_DOWNLOADS=never

if ! command -v uv >/dev/null 2>&1; then
  echo "[setup] installing uv from PyPI"
  python3.11 -m pip install --quiet --user uv 2>/dev/null || python3.11 -m pip install --quiet uv
  export PATH="$HOME/.local/bin:$PATH"
fi

java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1; }
if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ]; then
  echo "[setup] installing Java 17 (openjdk-17-jre-headless) for TorchServe"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq openjdk-17-jre-headless
fi
echo "[setup] java $(java_major) at $(command -v java)"

uv sync --frozen --python python3.11
echo "[setup] environment ready in .venv ($(.venv/bin/python -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)'))"
