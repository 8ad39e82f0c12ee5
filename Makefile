# Single entry point. `make serve` = install + build artifacts + start TorchServe; `make test` = the test suite.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
export PATH := $(HOME)/.local/bin:$(PATH)

PY       := .venv/bin/python
CIFAKE   ?= ../shared/data/cifake
OUTSIDE  ?= ../shared/data/outside ../shared/data/outside2
MODEL    ?= model
# make robustness SPLIT=validation: compare candidates on their own validation split, without reading test
SPLIT    ?= test
ARTIFACTS := build/artifacts
SOURCES  := $(wildcard detector/*.py handlers/*.py handlers/*.yaml export/*.py $(MODEL)/spectral.json) $(MODEL)/model.safetensors $(MODEL)/metadata.json

.PHONY: setup build variants bench kserve-layout serve webui stop served-accuracy test test-unit container-test overload soak fuzz train promote evaluate robustness clean

setup: .venv/.installed
.venv/.installed: pyproject.toml uv.lock scripts/setup.sh
	bash scripts/setup.sh
	touch $@

# TorchScript + ONNX (parity-checked on real CIFAKE test images), then one .mar per backend.
build: model_store/SHA256SUMS
model_store/SHA256SUMS: .venv/.installed $(SOURCES)
	$(PY) -m export.export --model $(MODEL) --out $(ARTIFACTS) --parity-data $(CIFAKE)
	$(PY) -m export.archive --artifacts $(ARTIFACTS) --model-store model_store

# bf16 TorchScript and int8 ONNX beside the fp32 artifacts, with their accuracy against fp32 (variants.json).
variants: build
	$(PY) -m export.variants --model $(MODEL) --artifacts $(ARTIFACTS) --data $(CIFAKE)

# Every performance figure of BENCHMARKS.md, regenerated (about 27 minutes on 2 cores; run it on a quiet machine).
bench: variants
	$(PY) -m loadtest.bench_preprocess --images 1000
	$(PY) -m loadtest.bench_model --seconds 8
	$(PY) -m loadtest.sweep --models ai_detector,ai_detector_onnx,ai_detector_int8,stock_baseline --users 1,2,4,8,16,32,64 --seconds 15
	$(PY) -m loadtest.scaling --model ai_detector_int8 --seconds 12
	$(PY) -m loadtest.protocols --model ai_detector_int8 --requests 240

# The storage layout KServe's TorchServe predictor reads (docs/scaling.md).
kserve-layout: build
	$(PY) -m ops.kserve_layout --model-store model_store --out build/kserve

serve: build
	$(PY) -m ops.server start

# The web page (drag-and-drop, labels, confidence, Grad-CAM) on http://127.0.0.1:8090, forwarding to the server.
webui: .venv/.installed
	$(PY) -m ops.webui

stop: .venv/.installed
	$(PY) -m ops.server stop

# Accuracy through the running server (`make serve` first) on all 20,000 test images, both backends,
# beside `make evaluate`'s offline figure; fails beyond 0.1 pt (model/reports/served_accuracy.md, ~15 min).
served-accuracy: .venv/.installed
	$(PY) -m ops.served_accuracy --data $(CIFAKE) --model-dir $(MODEL) --offline-report $(MODEL)/reports/test_report.json --out $(MODEL)/reports

# The unit tier alone (tests/unit): no CIFAKE, no archives, no server; well under a minute on 2 cores.
test-unit: .venv/.installed
	$(PY) -m pytest tests/unit

# Everything: the unit tier, then the integration tier (CIFAKE, the archives, real TorchServe processes,
# the container tests, which install and start Docker's engine where missing). CI runs this.
test: build
	bash scripts/setup_test_tools.sh
	$(PY) -m pytest
	@cat build/reports/container.md 2>/dev/null || true

# The container path alone: image build, docker compose up (host networking, docker-compose.hostnet.yml),
# answers against a host-run server, Prometheus, overload, restart, down (figures: build/reports/container.md).
container-test: build
	$(PY) -m pytest -m container tests/integration/container
	@cat build/reports/container.md

# Load beyond capacity against a running server (`make serve` or docker compose): 4x the saturation concurrency.
overload: .venv/.installed
	$(PY) -m loadtest.overload --model ai_detector

# Reliability runs outside CI's default: a 10-minute soak on a fresh server (worker memory growth
# must stay under 10 %, every request answered), and 20,000 random fuzz examples per decode test.
soak: build
	$(PY) -m pytest -m soak -s -p no:cacheprovider tests/integration/test_soak.py

fuzz: .venv/.installed
	HYPOTHESIS_PROFILE=long $(PY) -m pytest -q -p no:cacheprovider tests/unit/detector/test_fuzz_decode.py

# The shipped model, exactly as it was made: training/recipe/*.toml in order, each step fine-tuning the previous
# step's run (runs/NN_name). On 2 CPU cores (~2 h 45 min) a progressive run (64 -> 112 -> 224 px), a fine-tune at
# 224 px, a fine-tune at 112 px, a step at 224 px with JPEG/blur augmentation and a second one; then two long
# 224 px steps that ran on one H100 (11 + 6.5 min; the same code runs on a CPU, for about two days).
# Ship the last run with `make promote RUN=runs/07_model_224_gpu2` (after `make evaluate MODEL=runs/07_model_224_gpu2`).
RECIPE := $(sort $(wildcard training/recipe/*.toml))
train: .venv/.installed
	for step in $(RECIPE); do $(PY) -m training.train --config $$step --data $(CIFAKE) --resume || exit 1; done

# A finished run into $(MODEL): weights, metadata.json, config.json, train log and reports (make evaluate MODEL=RUN
# first), then the UNCERTAIN threshold and the spectral score refitted for it; refuses an unfinished or incomplete run.
promote: .venv/.installed
	@test -n "$(RUN)" || { echo "usage: make promote RUN=runs/<name>" >&2; exit 2; }
	$(PY) -m training.promote --run $(RUN) --model $(MODEL) --data $(CIFAKE)

# The official test split (test_report.*), then how often answers are right outside CIFAKE, both folders (outside_report.*).
evaluate: .venv/.installed
	$(PY) -m training.evaluate --model $(MODEL) --data $(CIFAKE) --split test --out $(MODEL)/reports
	$(PY) -m training.outside --model $(MODEL) --outside $(OUTSIDE) --data $(CIFAKE) --out $(MODEL)/reports

robustness: .venv/.installed
	$(PY) -m training.robustness --model $(MODEL) --data $(CIFAKE) --images 2000 --split $(SPLIT) --out $(MODEL)/reports

clean:
	rm -rf build model_store/*.mar model_store/SHA256SUMS run
