"""Readers during a write: searches while another process indexes and checkpoints never fail.

The writer (a child process) checkpoints after every batch, so readers open the
index across many sidecar/vector-file swaps. The only refusal allowed is the
"being built" BusyError before the index exists.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from geovec.backend.demo import write_scene
from geovec.backend.errors import BusyError, GeoVecError
from geovec.backend.index.store import IndexStore

WRITER = r'''
import sys
from geovec.backend.indexing import index_folder, stages
from geovec.backend.model.embedder import load_embedder
from geovec.backend.types import TilingParams
stages.TileWriter.__init__.__defaults__ = (0.0,)
stages.CHECKPOINT_COST_RATIO = 0.0
emb = load_embedder(sys.argv[3], device="cpu")
s = index_folder(sys.argv[1], sys.argv[2], emb, params=TilingParams(tile_size=32), batch_size=2, workers=1)
print(s.tiles)
'''


def test_readers_during_a_write(tmp_path: Path, tiny_model_dir: Path, matrix, caplog) -> None:
    folder = tmp_path / "rasters"
    for i in range(2):
        write_scene(folder / f"s{i}.tif", ("water", "forest")[i], size=96, seed=i)
    idx = tmp_path / "idx"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(folder), str(idx), str(tiny_model_dir)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    counts = {"searches": 0, "building": 0}
    errors: list[str] = []
    lock = threading.Lock()

    def reader() -> None:
        while writer.poll() is None:
            if not (idx / "index.json").exists() and not (idx / "writer.lock").exists():
                time.sleep(0.01)
                continue
            try:
                store = IndexStore.open(idx)
                try:
                    hits = store.search(np.ones((1, store.dim), np.float32), k=5)[0]
                    assert all(np.isfinite(s) for _, s in hits)
                finally:
                    store.close()
                with lock:
                    counts["searches"] += 1
            except BusyError as e:
                if "being built" not in str(e):
                    errors.append(f"BusyError: {e}")
                with lock:
                    counts["building"] += 1
            except (GeoVecError, AssertionError, Exception) as e:  # noqa: BLE001 - every failure is a finding
                errors.append(f"{type(e).__name__}: {e}")

    with caplog.at_level(logging.WARNING, logger="geovec"):
        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        out, err = writer.communicate(timeout=600)
        for t in threads:
            t.join(60)
    assert writer.returncode == 0, err[-2000:]
    warnings = [r.getMessage() for r in caplog.records if "interrupted run" in r.getMessage()]
    matrix.add("readers during a write", f"{counts['searches']} searches", "ok" if not errors else errors[0][:60])
    matrix.add("readers during a write", "no false 'interrupted run' warnings", "ok" if not warnings else warnings[0][:60])
    assert not errors, errors[:5]
    assert not warnings, warnings[:3]
    assert counts["searches"] > 0
    final = IndexStore.open(idx)
    try:
        assert final.count == int(out.strip())
    finally:
        final.close()
