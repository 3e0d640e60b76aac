"""The Ray Data engine on a local 2-CPU Ray: same tiles and vectors as the local engine, SIGKILL + resume."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from geovec.backend.cli import main
from geovec.backend.index.store import IndexStore
from geovec.backend.indexing import index_folder
from geovec.backend.indexing.ray_engine import index_folder_ray, remote_model
from geovec.backend.types import TilingParams

pytestmark = pytest.mark.slow

PARAMS = TilingParams(tile_size=64, min_valid_fraction=0.5)


@pytest.fixture(scope="module")
def ray_address(ray_local: str) -> str:
    """The session's local Ray (2 CPUs); drivers in subprocesses join it by its address."""
    return ray_local


def _contents(index: Path) -> dict[str, tuple]:
    """tile_id -> (scene_id, window, valid_fraction, vector) of every stored tile."""
    store = IndexStore.open(index)
    try:
        with sqlite3.connect(index / "meta.sqlite") as con:
            ids = [r[0] for r in con.execute("SELECT tile_id FROM tiles")]
        out = {}
        for t in ids:
            rec = store.get(t)
            out[t] = (rec.scene_id, rec.window, round(rec.valid_fraction, 6), rec.footprint_wgs84, store.vector(t))
        assert store.count == len(ids)
        assert all(s["status"] == "complete" for s in store.scenes())
        return out
    finally:
        store.close()


def _same(a: dict[str, tuple], b: dict[str, tuple]) -> None:
    assert a.keys() == b.keys()
    for t in a:
        assert a[t][:4] == b[t][:4], t
        np.testing.assert_allclose(a[t][4], b[t][4], atol=1e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def local_index(tmp_path_factory: pytest.TempPathFactory, shared_data: Path, tiny_embedder) -> Path:
    idx = tmp_path_factory.mktemp("local") / "idx"
    s = index_folder(shared_data, idx, tiny_embedder, params=PARAMS, batch_size=8)
    assert s.tiles > 100 and not s.errors
    return idx


def test_ray_and_local_engines_store_the_same_tiles_and_vectors(ray_address: str, shared_data: Path,
                                                                 tiny_model_dir: Path, local_index: Path,
                                                                 tmp_path: Path) -> None:
    s = index_folder_ray(str(shared_data), str(tmp_path / "ray"), model_spec=str(tiny_model_dir), params=PARAMS,
                         batch_size=8)
    assert not s.errors and not s.cancelled and s.scenes == 5
    _same(_contents(tmp_path / "ray"), _contents(local_index))
    again = index_folder_ray(str(shared_data), str(tmp_path / "ray"), model_spec=str(tiny_model_dir),
                             params=PARAMS)
    assert (again.scenes, again.tiles, again.scenes_skipped_unchanged) == (0, 0, 5)  # incremental


def _count(index: Path) -> int:
    try:
        with sqlite3.connect(f"file:{index / 'meta.sqlite'}?mode=ro", uri=True, timeout=5) as con:
            return int(con.execute("SELECT COUNT(*) FROM tiles").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_sigkill_of_the_ray_driver_then_rerun_resumes(ray_address: str, shared_data: Path, tiny_model_dir: Path,
                                                      local_index: Path, tmp_path: Path) -> None:
    idx = tmp_path / "idx"
    cmd = [sys.executable, "-m", "geovec.backend", "index", str(shared_data), "--index", str(idx),
           "--model", str(tiny_model_dir), "--engine", "ray", "--address", ray_address, "--tile-size", "64",
           "--batch-size", "2", "--no-progress"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 240
    try:
        while _count(idx) < 10:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "no tiles written in 240 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    partial = _count(idx)
    done = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    got = _contents(idx)
    _same(got, _contents(local_index))
    assert 10 <= partial < len(got)  # killed mid-run; the rerun skipped the stored tiles and added the rest


def test_engine_ray_needs_a_model_for_a_new_index(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                          tiny_model_dir: Path, shared_data: Path) -> None:
    code = main(["index", str(shared_data), "--index", str(tmp_path / "i"), "--engine", "ray",
                 "--tile-size", "64", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "--model is required" in err and "Traceback" not in err


def test_a_local_checkpoint_is_described_without_loading_it(tiny_model_dir: Path, tiny_embedder) -> None:
    m = remote_model(str(tiny_model_dir))  # from its files: no Ray task, no weights loaded
    assert (m.dim, m.preset.name, m.checkpoint_id) == (tiny_embedder.dim, tiny_embedder.preset.name,
                                                       tiny_embedder.checkpoint_id)
    assert m.identity == tiny_embedder.identity  # fingerprint, dtype and image policy as the loader's
