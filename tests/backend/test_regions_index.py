"""Indexes with regions: stored with their tile, backfilled, incremental, crash-safe, repaired (real files)."""

from __future__ import annotations

import json
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
from geovec.backend.demo import write_sample_folder, write_scene
from geovec.backend.errors import IndexCorruptError, InputError
from geovec.backend.index.repair import repair_index
from geovec.backend.index.store import IndexStore
from geovec.backend.indexing import index_folder
from geovec.backend.types import TilingParams

SPEC = "grid=1,2;overlap=0.25"
K = 5  # candidates per tile of SPEC
TILE = 32


def _rows(idx: Path) -> dict[str, list[tuple[float, ...]]]:
    """tile_id -> its region boxes, read straight from SQLite."""
    with sqlite3.connect(idx / "meta.sqlite") as con:
        out: dict[str, list[tuple[float, ...]]] = {t: [] for (t,) in con.execute("SELECT tile_id FROM tiles")}
        for tid, *box in con.execute("SELECT t.tile_id, r.x1, r.y1, r.x2, r.y2 FROM regions r LEFT JOIN tiles t "
                                     "ON t.label = r.tile_label ORDER BY r.label"):
            assert tid is not None, "a region whose tile is gone"
            out[tid].append(tuple(box))
    return out


def _consistent(idx: Path, k: int = K) -> int:
    """Every tile has exactly k regions, no duplicates; the region graph holds exactly SQLite's regions."""
    rows = _rows(idx)
    assert all(len(b) == k and len(set(b)) == k for b in rows.values()), {t: len(b) for t, b in rows.items()}
    with IndexStore.open(idx) as st:
        assert st.region_count == len(rows) * k == st.meta["regions"]["count"]
        assert st.region_index.half is not None
        assert len(st.region_index.half.index.get_ids_list()) - 0 >= st.region_count
    return len(rows)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    return write_sample_folder(tmp_path / "rasters", size=64)


def test_index_with_regions_stores_them_with_their_tiles(folder: Path, tmp_path: Path, tiny_embedder) -> None:
    idx = tmp_path / "idx"
    s = index_folder(folder, idx, tiny_embedder, params=TilingParams(tile_size=TILE), regions=SPEC)
    assert s.tiles == 12 and s.regions == 12 * K
    assert _consistent(idx) == 12
    side = json.loads((idx / "index.json").read_text())
    assert side["regions"]["spec"] == "grid=1,2;overlap=0.25;max=64;min=4"
    assert (idx / "regions.hnsw").stat().st_size == side["regions"]["hnsw_bytes"]
    with IndexStore.open(idx) as st:  # a stored region vector is its own nearest region, score 1
        rows, vecs = st.regions_of([3])
        assert len(rows) == K
        (best, score), *_ = st.search_regions(vecs[2], 3)
        assert best == rows[2] and score == pytest.approx(1.0, abs=1e-5)
        # the stored vector equals encode_regions on the same tile image and boxes (same input form)
        rec = st.records_by_label([3])[3]
        scene, stretch = st.scene(rec.scene_id)  # type: ignore[misc]
    from geovec.backend.raster.tiling import read_tile

    image, _ = read_tile(scene, rec.window, stretch, out_size=TILE)
    again = tiny_embedder.encode_regions(image, [r.box for r in rows])
    assert np.abs(again - vecs).max() < 1e-4
    # unchanged rerun: nothing to do
    s2 = index_folder(folder, idx, tiny_embedder, params=TilingParams(tile_size=TILE))
    assert (s2.tiles, s2.regions, s2.scenes_skipped_unchanged) == (0, 0, 3)


def test_regions_backfill_an_index_made_without(folder: Path, tmp_path: Path, tiny_embedder) -> None:
    idx = tmp_path / "idx"
    index_folder(folder, idx, tiny_embedder, params=TilingParams(tile_size=TILE))
    with IndexStore.open(idx) as st:
        assert st.regions_spec is None and st.region_count == 0
    s = index_folder(folder, idx, tiny_embedder, params=TilingParams(tile_size=TILE), regions=SPEC)
    assert s.tiles == 0 and s.regions == 12 * K  # no tile re-embedded, every tile's regions added
    assert _consistent(idx) == 12
    again = index_folder(folder, idx, tiny_embedder, params=TilingParams(tile_size=TILE), regions=SPEC)
    assert again.regions == 0
    before = (idx / "index.json").read_bytes()
    with pytest.raises(InputError, match="stores regions made with"):
        index_folder(folder, idx, tiny_embedder, params=TilingParams(tile_size=TILE), regions="grid=1,3")
    with pytest.raises(InputError, match="region spec"):
        index_folder(folder, idx, tiny_embedder, params=TilingParams(tile_size=TILE), regions="grid=99")
    assert (idx / "index.json").read_bytes() == before


def test_incremental_reindex_and_delete_keep_regions_with_tiles(folder: Path, tmp_path: Path, tiny_embedder) -> None:
    idx = tmp_path / "idx"
    params = TilingParams(tile_size=TILE)
    index_folder(folder, idx, tiny_embedder, params=params, regions=SPEC)
    old = _rows(idx)
    time.sleep(0.01)
    write_scene(folder / "lake_utm17n.tif", "water", size=64, seed=7)  # changed content and fingerprint
    (folder / "forest_albers.tif").unlink()
    s = index_folder(folder, idx, tiny_embedder, params=params)  # the index's own spec is kept
    assert s.scenes_removed == 1 and s.tiles == 4 and s.regions == 4 * K
    assert _consistent(idx) == 8
    new = _rows(idx)
    assert len(set(new) & set(old)) == 8  # tile ids are stable per window; lake's were dropped and re-added
    with IndexStore.open(idx) as st:
        assert st.meta["regions"]["max_label"] == 16 * K - 1  # labels are never reused


def test_repair_rebuilds_both_files_and_open_checks_the_region_file(folder: Path, tmp_path: Path,
                                                                    tiny_embedder) -> None:
    idx = tmp_path / "idx"
    index_folder(folder, idx, tiny_embedder, params=TilingParams(tile_size=TILE), regions=SPEC)
    data = bytearray((idx / "regions.hnsw").read_bytes())
    data[200] ^= 0xFF
    (idx / "regions.hnsw").write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match="regions.hnsw fails its SHA-256"):
        IndexStore.open(idx)
    (idx / "regions.hnsw").unlink()
    with pytest.raises(IndexCorruptError, match="lacks regions.hnsw"):
        IndexStore.open(idx)
    repair_index(idx)
    assert _consistent(idx) == 12
    with IndexStore.open(idx) as st:
        rows, vecs = st.regions_of([0])
        assert st.search_regions(vecs[0], 1)[0][0] == rows[0]


WRITER = """
import os, signal, sys
import numpy as np
sys.path.insert(0, {tests!r})
from geovec.backend.index.store import IndexStore
st = IndexStore.open(sys.argv[1], writable=True)
rec = st.records_by_label([0])[0]
import dataclasses
recs = [dataclasses.replace(rec, tile_id=f"new{{i}}") for i in range(3)]
rng = np.random.default_rng(1)
vecs = rng.normal(size=(3, st.dim)).astype("float32")
regions = [(np.array([[0, 0, 8, 8], [8, 8, 16, 16]], float), rng.normal(size=(2, st.dim)).astype("float32"))
           for _ in range(3)]
st.add(recs, vecs, regions)
os.kill(os.getpid(), signal.SIGKILL)  # committed to SQLite, never checkpointed
"""


def test_crash_after_commit_heals_regions_on_open(folder: Path, tmp_path: Path, tiny_embedder) -> None:
    idx = tmp_path / "idx"
    index_folder(folder, idx, tiny_embedder, params=TilingParams(tile_size=TILE), regions=SPEC)
    r = subprocess.run([sys.executable, "-c", WRITER.format(tests=str(Path(__file__).parent)), str(idx)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == -signal.SIGKILL, r.stderr
    with IndexStore.open(idx) as st:  # read-only: healed in memory
        assert st.count == 15 and st.region_count == 12 * K + 6
        rows, vecs = st.regions_of(list(st.tile_labels(["new2"]).values()))
        assert st.search_regions(vecs[1], 1)[0][0] == rows[1]
    IndexStore.open(idx, writable=True).close()  # writable: healed and checkpointed
    assert json.loads((idx / "index.json").read_text())["regions"]["count"] == 12 * K + 6


def test_sigkill_mid_index_with_regions_then_resume(tmp_path: Path, tiny_model_dir: Path, capsys) -> None:
    folder = tmp_path / "f"
    for i in range(3):
        write_scene(folder / f"s{i}.tif", "urban", size=96, seed=i, origin=(400000.0 + 5000 * i, 3300000.0))
    total = 3 * 36
    clean = tmp_path / "clean"
    assert main(["index", str(folder), "--index", str(clean), "--model", str(tiny_model_dir), "--tile-size", "16",
                 "--regions", SPEC, "--no-progress", "--json"]) == 0
    capsys.readouterr()
    idx = tmp_path / "idx"
    cmd = [sys.executable, "-m", "geovec.backend", "index", str(folder), "--index", str(idx), "--model",
           str(tiny_model_dir), "--tile-size", "16", "--batch-size", "4", "--workers", "1", "--no-progress",
           "--regions", SPEC]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def count() -> int:
        try:
            with sqlite3.connect(f"file:{idx / 'meta.sqlite'}?mode=ro", uri=True) as con:
                return int(con.execute("SELECT COUNT(*) FROM tiles").fetchone()[0])
        except sqlite3.Error:
            return 0

    deadline = time.monotonic() + 240
    while count() < 12 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    at_kill = count()
    assert 0 < at_kill < total, f"kill came too late/early ({at_kill} of {total}): {proc.stderr.read()!r}"
    assert _rows(idx) and all(len(b) == K for b in _rows(idx).values())  # a stored tile has its regions

    assert main(["index", str(folder), "--index", str(idx), "--no-progress", "--json"]) == 0  # the index's spec
    out = json.loads(capsys.readouterr().out)
    assert out["tiles"] == total - at_kill and out["regions"] == (total - at_kill) * K
    assert _consistent(idx) == total
    assert _rows(idx) == _rows(clean)  # same tiles, same boxes, none lost, none duplicated
