#!/usr/bin/env bash
# Tools the test suite needs beyond the locked Python environment: Debian's Chromium, which the
# web page's end-to-end test drives headless through Playwright (PyPI's playwright, no browser download).
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  echo "[setup] installing chromium (Debian) for the web page's browser test"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium
fi
echo "[setup] $(chromium --version 2>/dev/null | head -n1)"
