# GeoVec: `make demo` runs the main job, `make test` runs every test. Both set up what they need.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DIR ?=
# `make demo MODEL=...`: an unreachable default model falls back to the tiny one; any other failure stops.
MODEL ?= vlm2vec-qwen2vl-2b
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system-deps demo test test-backend test-floor test-plugin package bench lint openapi clean

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
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/backend tests/training tests/reliability

test-plugin: setup system-deps
	QT_QPA_PLATFORM=offscreen GEOVEC_BACKEND_PYTHON=$(abspath $(BIN))/python \
	  /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/plugin

# The model tests again at the oldest transformers/peft the loader accepts (pyproject's floors).
FLOOR := .venv-floor
$(FLOOR)/.installed: pyproject.toml
	$(BIN)/python -m pip install -q --no-deps --target $(FLOOR) transformers==4.52.4 peft==0.12.0 tokenizers==0.21.4
	touch $@

test-floor: setup $(FLOOR)/.installed
	PYTHONPATH=$(abspath $(FLOOR)) $(BIN)/python -m pytest -q -p no:cacheprovider \
	  tests/backend/test_model.py tests/backend/test_model_parity.py tests/backend/test_region_forward.py \
	  tests/backend/test_vision_fast.py

test: test-backend test-floor test-plugin

package:
	$(PY) scripts/make_package.py --out dist/geovec.zip

# Every benchmark figure of the README; each script prints the machine it ran on. bench_hnsw at 1M
# needs ~13 GiB and ~10 min on 2 cores: `make bench HNSW_SIZES=100000` for the quick one.
HNSW_SIZES ?= 100000 1000000
MULTI_TILES ?= 100000
bench: setup
	$(BIN)/python benchmarks/bench_indexing.py --repeat 2
	$(BIN)/python benchmarks/bench_rss.py
	$(BIN)/python benchmarks/bench_hnsw.py --sizes $(HNSW_SIZES)
	$(BIN)/python benchmarks/bench_http.py
	$(BIN)/python benchmarks/bench_training.py
	$(BIN)/python benchmarks/bench_lifecycle.py --repeat 5
	$(BIN)/python benchmarks/bench_read.py
	$(BIN)/python benchmarks/bench_ray.py
	$(BIN)/python benchmarks/bench_multi.py --tiles $(MULTI_TILES)
	$(BIN)/python benchmarks/bench_eval_ranking.py
	$(BIN)/python benchmarks/bench_feedback.py

lint: setup
	$(BIN)/ruff check backend training plugin tests benchmarks
	$(BIN)/mypy backend training

openapi: setup
	$(BIN)/python -m geovec.backend.server.openapi --write

clean:
	rm -rf $(VENV) $(FLOOR) dist build *.egg-info
