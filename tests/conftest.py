"""Fixtures shared by the backend and training tests (run in .venv)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# `--dtype auto` means bf16 on CPUs with native bf16 (AVX512-BF16/AMX) and fp32 elsewhere; the tests
# compare vectors to 1e-5 and must agree across machines, so they pin what auto means on CPU (every
# subprocess and server they start inherits it). tests/backend/test_model.py covers the detection.
os.environ.setdefault("GEOVEC_CPU_DTYPE", "fp32")
SHARED_DATA = Path(os.environ.get("GEOVEC_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real rasters in ../shared/data: required in CI, skipped with a message elsewhere."""
    if not (SHARED_DATA / "README.md").exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the real sample rasters at {SHARED_DATA}; none found")
        pytest.skip(f"real sample rasters not found at {SHARED_DATA} (set GEOVEC_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2-VL checkpoint in HF layout, written once per test session."""
    from geovec.backend.model.tiny import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_embedder(tiny_model_dir: Path):
    """The tiny model loaded through the same from_pretrained path as a real checkpoint."""
    from geovec.backend.model.embedder import load_embedder

    return load_embedder(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray (2 CPUs) for the whole session, stopped at its end; yields its GCS address (for drivers
    in subprocesses). Ray starts slowly on a small machine: every Ray test shares this one."""
    ray = pytest.importorskip("ray")
    ctx = ray.init(num_cpus=2, object_store_memory=200 * 1024**2, include_dashboard=False, log_to_driver=False)
    try:
        yield ctx.address_info["gcs_address"]
    finally:
        ray.shutdown()
