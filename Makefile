# GeoVec: `make demo` runs the main job, `make test` runs every test. Both set up what they need.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DIR ?=
# `make demo MODEL=...`: an unreachable default model falls back to the tiny one; any other failure stops.
MODEL ?= vlm2vec-qwen2vl-2b
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system-deps demo test test-backend test-floor test-plugin package bench bench-long bench-gpu lint openapi clean

# The backend environment: torch/torchvision pinned to tested versions, the rest as ranges.
$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip wheel
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[train,dev,ray,parquet]'
	touch $@

setup: $(BIN)/.installed

# QGIS 3.22+ from Debian for the plugin tests (system python3), Xvfb for screenshots.
system-deps:
	@/usr/bin/python3 -c 'import qgis.core, pytest, pytest_timeout' 2>/dev/null || { \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q \
	    qgis python3-qgis qgis-plugin-grass- xvfb python3-pytest python3-pytest-timeout; }

demo: setup
	$(BIN)/python -m geovec.backend.demo --model "$(MODEL)" $(if $(DIR),--dir "$(DIR)",)

test-backend: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15 tests/backend tests/training tests/reliability

test-plugin: setup system-deps
	QT_QPA_PLATFORM=offscreen GEOVEC_BACKEND_PYTHON=$(abspath $(BIN))/python \
	  /usr/bin/python3 -m pytest -q -p no:cacheprovider --durations=15 tests/plugin

# The model tests again at the oldest transformers/peft the loader accepts (pyproject's floors).
FLOOR := .venv-floor
$(FLOOR)/.installed: pyproject.toml
	$(BIN)/python -m pip install -q --no-deps --target $(FLOOR) transformers==4.52.4 peft==0.12.0 tokenizers==0.21.4
	touch $@

test-floor: setup $(FLOOR)/.installed
	PYTHONPATH=$(abspath $(FLOOR)) $(BIN)/python -m pytest -q -p no:cacheprovider --durations=15 \
	  tests/backend/test_model.py tests/backend/test_model_parity.py tests/backend/test_region_forward.py \
	  tests/backend/test_vision_fast.py tests/backend/test_vlm2vec_upstream.py

test: test-backend test-floor test-plugin

package:
	$(PY) scripts/make_package.py --out dist/geovec.zip

# Every benchmark the README and docs cite, with the command of its table row (each script prints the
# machine it ran on). About 2 h on 2 CPU cores, ~14 GiB peak (bench_hnsw at 1M, bench_fullsize); the
# builds of the 1M hnsw and the feedback index are kept in $(BENCH_CACHE) for reruns. What needs a GPU
# or takes hours is not run: the last step prints how to run it (`make bench-gpu`, `make bench-long`).
BENCH_CACHE ?= .bench-cache
RUN_BENCH := $(BIN)/python benchmarks
bench: setup
	$(RUN_BENCH)/bench_indexing.py --repeat 2
	$(RUN_BENCH)/bench_rss.py
	$(RUN_BENCH)/bench_rss.py --tiles 16 --tile-size 32 --regions grid=1,2
	$(RUN_BENCH)/bench_hnsw.py --sizes 100000
	$(RUN_BENCH)/bench_hnsw.py --sizes 1000000 --ef-search 32 40 48 56 64 96 --cache $(BENCH_CACHE)/hnsw
	$(RUN_BENCH)/bench_hnsw.py --sizes 1000000 --M 32 --ef-search 32 34 36 38 --cache $(BENCH_CACHE)/hnsw
	$(RUN_BENCH)/bench_http.py
	$(RUN_BENCH)/bench_lifecycle.py --repeat 3
	$(RUN_BENCH)/bench_regions.py --part search --tiles 5000 --dim 128
	OMP_NUM_THREADS=1 $(RUN_BENCH)/bench_regions.py --part rerank
	OMP_NUM_THREADS=1 $(RUN_BENCH)/bench_region_scoring.py --sizes 56 224 448 --k 16 30 --reps 15
	$(RUN_BENCH)/bench_fullsize.py
	$(RUN_BENCH)/bench_training.py
	$(RUN_BENCH)/bench_eval_ranking.py
	$(RUN_BENCH)/bench_feedback.py --cache $(BENCH_CACHE)/feedback
	$(RUN_BENCH)/bench_read.py --skip-pipeline
	$(RUN_BENCH)/bench_read.py --pipeline-only --tile-size 32
	$(RUN_BENCH)/bench_ray.py
	$(RUN_BENCH)/bench_multi.py
	$(BIN)/geovec train --config training/configs/nc_landsat7.yaml
	$(RUN_BENCH)/workflows_nc.py
	$(RUN_BENCH)/region_proofs.py nc --threads 1
	$(RUN_BENCH)/region_proofs.py neon --threads 1
	@echo "Not run here: region search at 100k tiles x 16 regions x 1536-d (~1.5 h and ~23 GiB of disk"
	@echo "on 2 cores): make bench-long. On an NVIDIA GPU: make bench-gpu."

# The README's 100k-tile region search row (the build takes ~1.5 h on 2 cores; kept for reruns).
bench-long: setup
	$(RUN_BENCH)/bench_regions.py --part search --index $(BENCH_CACHE)/regions-100k

# The README's GPU figures: needs an NVIDIA GPU (CUDA torch); under 2 minutes on an H100.
bench-gpu: setup
	@$(BIN)/python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "bench-gpu needs an NVIDIA GPU with CUDA torch; run it on such a machine")'
	bash benchmarks/gpu_check.sh
	bash benchmarks/gpu_check.sh --image-sizes 0 448 --variants compile --tiles 1024
	$(BIN)/python benchmarks/gpu_sdpa_probe.py

lint: setup
	$(BIN)/ruff check backend training plugin tests benchmarks
	$(BIN)/mypy backend training

openapi: setup
	$(BIN)/python -m geovec.backend.server.openapi --write

clean:
	rm -rf $(VENV) $(FLOOR) $(BENCH_CACHE) dist build *.egg-info
