"""SIGKILL at the checkpoint's critical points, then resume: no tile lost, none duplicated.

A child process indexes a small folder with a checkpoint after every batch and kills
itself (SIGKILL: no cleanup runs) at one point of the write path; the parent then
opens the index read-only, resumes the run in-process, and compares the tiles with
a clean run's.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from geovec.backend.demo import write_scene
from geovec.backend.index.store import IndexStore
from geovec.backend.index.verify import verify_index
from geovec.backend.indexing import index_folder
from geovec.backend.types import TilingParams

PARAMS = TilingParams(tile_size=32)

CHILD = r'''
import os, signal, sys
from pathlib import Path
from geovec.backend.indexing import index_folder, stages
from geovec.backend.index import files, store as store_mod
from geovec.backend.model.embedder import load_embedder
from geovec.backend.types import TilingParams

folder, index, model, point, nth = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
stages.TileWriter.__init__.__defaults__ = (0.0,)  # checkpoint after every batch
stages.CHECKPOINT_COST_RATIO = 0.0
seen = {"n": 0, "renamed": False}

def hit():
    seen["n"] += 1
    if seen["n"] == nth:
        os.kill(os.getpid(), signal.SIGKILL)

write_json, replace, fsync_dir = files.write_json_atomic, os.replace, files.fsync_dir
if point in ("mid-create", "before-sidecar"):   # new vector file written, sidecar not yet replaced
    def patched(target, obj):
        if target.name == "index.json":
            hit()
        return write_json(target, obj)
    files.write_json_atomic = patched
elif point == "before-rename":                   # sidecar names the new file; it is not renamed in yet
    def patched(src, dst):
        if str(dst).endswith("vectors.hnsw"):
            hit()
        return replace(src, dst)
    os.replace = patched
elif point == "after-rename":                    # renamed, the folder not yet fsynced
    def patched(src, dst):
        out = replace(src, dst)
        seen["renamed"] = str(dst).endswith("vectors.hnsw")
        return out
    def patched_sync(p):
        if seen["renamed"]:
            seen["renamed"] = False
            hit()
        return fsync_dir(p)
    os.replace, files.fsync_dir = patched, patched_sync
elif point == "after-commit":                    # tiles committed to SQLite, not yet added to hnswlib
    grown = store_mod.grown_capacity
    def patched(cap, need):
        hit()
        return grown(cap, need)
    store_mod.grown_capacity = patched
emb = load_embedder(model, device="cpu")
index_folder(folder, index, emb, params=TilingParams(tile_size=32), batch_size=4, workers=1)
print("finished without being killed")
'''

POINTS = [("mid-create", 1), ("after-commit", 3), ("before-sidecar", 3), ("before-rename", 4), ("after-rename", 2)]


def _tiles(index: Path) -> list[str]:
    with sqlite3.connect(index / "meta.sqlite") as con:
        return sorted(r[0] for r in con.execute("SELECT tile_id FROM tiles"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sigkill") / "rasters"
    write_scene(d / "a.tif", "water", size=96, seed=1)
    write_scene(d / "b.tif", "forest", size=96, seed=2)
    return d


@pytest.fixture(scope="module")
def clean(folder: Path, tmp_path_factory: pytest.TempPathFactory, tiny_embedder) -> list[str]:
    idx = tmp_path_factory.mktemp("clean") / "idx"
    index_folder(folder, idx, tiny_embedder, params=PARAMS, batch_size=4)
    return _tiles(idx)


@pytest.mark.slow
def test_sigkill_at_every_critical_point_then_resume(folder, clean, tmp_path, tiny_embedder, tiny_model_dir,
                                                     matrix) -> None:
    failures = []
    procs = {}  # every child at once: most of their time is starting Python and loading the model
    for point, nth in POINTS:
        case = f"{point}#{nth}"
        idx = tmp_path / case.replace("#", "-")
        procs[case] = (idx, subprocess.Popen(
            [sys.executable, "-c", CHILD, str(folder), str(idx), str(tiny_model_dir), point, str(nth)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for case, (idx, proc) in procs.items():
        _, err = proc.communicate(timeout=300)
        r = subprocess.CompletedProcess(proc.args, proc.returncode, "", err)
        outcome = "ok"
        if r.returncode != -signal.SIGKILL:
            outcome = f"not killed (rc {r.returncode})"
        else:
            if (idx / "index.json").exists():  # a reader right after the crash: opens, never crashes
                IndexStore.open(idx).close()
            s = index_folder(folder, idx, tiny_embedder, params=PARAMS, batch_size=4)
            got = _tiles(idx)
            report = verify_index(idx)
            if s.errors:
                outcome = f"errors {s.errors[:1]}"
            elif got != clean:
                outcome = f"{len(got)} tiles vs {len(clean)} (lost {len(set(clean) - set(got))}, dup {len(got) - len(set(got))})"
            elif not report.ok:
                outcome = "verify: " + "; ".join(report.lines()[-2:])
            else:
                store = IndexStore.open(idx)
                try:
                    if store.count != len(clean):
                        outcome = f"{store.count} searchable of {len(clean)}"
                finally:
                    store.close()
        matrix.add("sigkill + resume", case, outcome)
        if outcome != "ok":
            failures.append((case, outcome, r.stderr[-500:]))
    assert not failures, failures
