#!/usr/bin/env bash
# A training stage on a rented GPU machine with a time limit: a checkout and one archive go there, the run's
# files come back. The machine needs a python3 with torch, torchvision, Pillow, numpy and safetensors; no
# data, no network, no virtual environment. docs/training.md, "Training on a rented GPU".
#
#   .venv/bin/python -m training.pack --split train --out runs/cifake_train.tar.xz      # here: 31 MB
#   scripts/remote_stage.sh run CONFIG ARCHIVE OUT       # there, from the checkout's root
#   scripts/remote_stage.sh collect CONFIG OUT           # here, with OUT's files copied back
#
# run: unpacks the archive, trains the config on 512 images first (an error costs seconds, not the bank's
# minutes), builds the re-upload bank when the config swaps copies in, then trains the config's single phase
# for as many of its epochs as fit: the script should end within BUDGET seconds (default 540), counting
# EPOCH_SECONDS per epoch (default 40) and a minute for loading and calibration. Training is stopped at LIMIT
# seconds (default 585) whatever happens, which leaves weights but no calibrated metadata. OUT then holds the
# log, the run's small files, its progress and its weights in 15 MiB parts; the 89 MB checkpoint, optimizer
# included, stays there. EXTRA: further training flags.
# collect: rebuilds the run folder here, with a last.pt holding the weights and that progress (promote reads
# it; the run cannot be resumed from it), and fits its UNCERTAIN thresholds on its validation split; then
# make evaluate robustness MODEL=<run>.
set -euo pipefail
usage() { echo "usage: $0 run CONFIG ARCHIVE OUT | collect CONFIG OUT" >&2; exit 2; }
[ $# -ge 3 ] || usage
mode=$1 config=$2
python=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}   # the checkout's, else the machine's
# output, re-upload bank, and the single phase's align size and epochs, as the config resolves them
# (and ":N" when it caps its images per epoch)
read -r run bank align epochs cap phases < <("$python" -c '
import sys
from training.config import resolve
c, _ = resolve(["--config", sys.argv[1]])
last = c.phases[-1]
print(c.output, c.reupload_bank if c.reupload_probability else "-", last.align_size, last.epochs,
      f":{last.max_images_per_epoch}" if last.max_images_per_epoch else "-", len(c.phases))
' "$config")
[ "$cap" = - ] && cap=""
[ "$phases" = 1 ] || { echo "$config has $phases phases: remote_stage.sh trains single-phase stages" >&2; exit 2; }

case $mode in
run)
    [ $# -eq 4 ] || usage
    archive=$3 out=$4
    budget=${BUDGET:-540} limit=${LIMIT:-585} epoch_s=${EPOCH_SECONDS:-40} data=${DATA_DIR:-/tmp/cifake}
    start=$SECONDS
    export PYTHONUNBUFFERED=1
    mkdir -p "$out" "$data"
    log=$out/train.log
    { date -u; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 || true
      lscpu | grep 'Model name' || true; nproc
      "$python" -c 'import sys, torch, torchvision; print(sys.version.split()[0], torch.__version__, torchvision.__version__, "cuda", torch.cuda.is_available())'
    } >>"$log" 2>&1
    tar -xJf "$archive" -C "$data"
    echo "[remote] unpacked $(find "$data" -type f | wc -l) files at $((SECONDS - start)) s" >>"$log"
    scratch=$(mktemp -d)
    smoke=(--phases "$align:1" --max-train-images 512 --max-val-images 256 --output "$scratch/run")
    [ "$bank" = - ] || smoke+=(--reupload-bank "$scratch/bank.npz")
    # shellcheck disable=SC2086  # EXTRA: further training flags, word-split on purpose
    if ! "$python" -m training.train --config "$config" --data "$data" ${EXTRA:-} "${smoke[@]}" >"$scratch/smoke.log" 2>&1; then
        tail -30 "$scratch/smoke.log" >>"$log"; echo "[remote] the smoke run failed" >>"$log"; exit 1
    fi
    echo "[remote] smoke run passed at $((SECONDS - start)) s" >>"$log"
    if [ "$bank" != - ]; then
        "$python" -m training.reupload --data "$data" --copies 1 --workers "$(nproc)" --out "$bank" >"$scratch/bank.log" 2>&1 \
            || { tail -5 "$scratch/bank.log" >>"$log"; exit 1; }
        tail -1 "$scratch/bank.log" >>"$log"
    fi
    elapsed=$((SECONDS - start))
    fit=$(( (budget - elapsed - 60) / epoch_s ))
    (( fit < epochs )) && epochs=$fit
    (( epochs >= 1 )) || { echo "[remote] no time left for an epoch at ${elapsed} s" >>"$log"; exit 1; }
    echo "[remote] training $epochs epochs from ${elapsed} s" >>"$log"
    status=0
    # shellcheck disable=SC2086
    timeout $((limit - elapsed)) "$python" -m training.train --config "$config" --data "$data" ${EXTRA:-} \
        --phases "$align:$epochs$cap" >>"$log" 2>&1 || status=$?
    echo "[remote] training ended (exit $status) at $((SECONDS - start)) s" >>"$log"
    for name in metadata.json config.json train_log.jsonl; do cp "$run/$name" "$out/" 2>/dev/null || true; done
    "$python" -c 'import sys, torch; print(torch.load(sys.argv[1], weights_only=True)["state"])' "$run/last.pt" \
        >"$out/progress.json" 2>>"$log" || true
    [ -f "$run/model.safetensors" ] && split -b 15M "$run/model.safetensors" "$out/model.safetensors.part-"
    rm -rf "$scratch"
    exit "$status"
    ;;
collect)
    [ $# -eq 3 ] || usage
    out=$3
    mkdir -p "$run"
    cat "$out"/model.safetensors.part-* >"$run/model.safetensors"
    cp "$out"/{metadata.json,config.json,train_log.jsonl} "$run/"
    "$python" -c '
import sys, torch
from detector.model import load_weights
torch.save({"model": load_weights(sys.argv[1]), "state": open(sys.argv[2]).read().strip()}, sys.argv[1] + "/last.pt")
' "$run" "$out/progress.json"
    "$python" -m training.abstention --model "$run" --data "${CIFAKE:-../shared/data/cifake}" \
        --domain-keep "${DOMAIN_KEEP:-0.99}" --jpeg-recheck "${JPEG_RECHECK:-on}"
    echo "collected $run: next, make evaluate robustness MODEL=$run, and make promote RUN=$run if it beats model/"
    ;;
*) usage ;;
esac
