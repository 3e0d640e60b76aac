#!/usr/bin/env bash
# The GPU check: the full-size Qwen2-VL-2B architecture (random weights, bf16) on one GPU.
# Prints pipeline vs naive Hugging Face loop tiles/s and MFU, and region-scoring throughput,
# at the preset's image policy (1344 px, then the processor's bound: 980 px, 1,225 image tokens, as VLM2Vec's
# evaluation feeds its checkpoint) and at 448 px, and the forward pass alone per vision-tower
# variant (per-image, batched, compile). About 4-6 minutes on one H100; --out DIR writes results.json.
#
#   benchmarks/gpu_check.sh [--out DIR] [gpu_check.py options]
#
# Python: $PY, else .venv/bin/python, else python3. On an offline machine whose Python lacks the
# backend's packages, put their wheels (and the hnswlib sdist) in .whl/: they are installed into
# a private folder first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
SITE="${GEOVEC_SITE:-${TMPDIR:-/tmp}/geovec-site}"
NEEDS='import rasterio, hnswlib, shapely, pyproj, pydantic, platformdirs, transformers as t; assert int(t.__version__.split(".")[0]) < 5'
if ! "$PY" -c "$NEEDS" >/dev/null 2>&1 && ls .whl/*.whl >/dev/null 2>&1; then
  if [ ! -f "$SITE/.installed" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
    if ls .whl/hnswlib-*.tar.gz >/dev/null 2>&1; then
      "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target "$SITE" .whl/hnswlib-*.tar.gz
    fi
    touch "$SITE/.installed"
  fi
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
# the repository root is the package `geovec`
PKGS="${TMPDIR:-/tmp}/geovec-pkgs"
mkdir -p "$PKGS" && ln -sfn "$PWD" "$PKGS/geovec"
export PYTHONPATH="$PKGS:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
exec "$PY" benchmarks/gpu_check.py "$@"
