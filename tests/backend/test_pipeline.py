"""index_folder on synthetic GeoTIFFs: odd rasters, incremental updates, cancel, per-file errors."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from geovec.backend.demo import write_geotiff, write_scene
from geovec.backend.indexing import ProgressEvent, index_folder
from geovec.backend.types import TilingParams

TILE = 32
PARAMS = TilingParams(tile_size=TILE, min_valid_fraction=0.5)


def _tiles(index: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(index / "meta.sqlite") as con:
        return list(con.execute("SELECT tile_id, scene_id FROM tiles"))


def _store(index: Path):
    from geovec.backend.index.store import IndexStore

    return IndexStore.open(index)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """Two good scenes (8-bit UTM, 16-bit Albers) of 96x96 px = 9 tiles of 32 px each."""
    d = tmp_path / "rasters"
    write_scene(d / "water.tif", "water", size=96, seed=1)
    write_scene(d / "sub" / "forest16.tif", "forest", size=96, dtype="uint16", crs="EPSG:5070",
                origin=(1500000.0, 1600000.0), seed=2)
    return d


def test_indexes_every_tile_and_reports_progress(folder: Path, tmp_path: Path, tiny_embedder) -> None:
    events: list[ProgressEvent] = []
    s = index_folder(folder, tmp_path / "idx", tiny_embedder, params=PARAMS, batch_size=4, workers=2,
                     progress=events.append)
    assert (s.scenes, s.tiles, s.tiles_skipped, s.errors, s.cancelled) == (2, 18, 0, [], False)
    rows = _tiles(tmp_path / "idx")
    assert len(rows) == 18 and len({r[0] for r in rows}) == 18
    store = _store(tmp_path / "idx")
    try:
        assert store.count == 18
        assert {r["status"] for r in store.scenes()} == {"complete"}
    finally:
        store.close()
    assert events[-1].tiles_done == events[-1].tiles_total == 18
    done = [e.tiles_done for e in events]
    assert done == sorted(done)
    assert any(e.current_file and e.current_file.endswith(".tif") for e in events)


def test_odd_rasters_skipped_or_reported_never_fatal(tmp_path: Path, tiny_embedder) -> None:
    d = tmp_path / "odd"
    write_scene(d / "good.tif", "urban", size=64, seed=3)
    nodata = np.full((3, 64, 64), 0, dtype="uint16")
    write_geotiff(d / "nodata_only.tif", nodata, nodata=0)
    write_geotiff(d / "tiny3x3.tif", np.full((3, 3, 3), 100, dtype="uint8"))
    write_geotiff(d / "smaller_than_tile.tif", (np.random.default_rng(0).random((3, 24, 24)) * 255).astype("uint8"))
    write_geotiff(d / "no_crs.tif", np.full((3, 64, 64), 50, dtype="uint8"), crs=None)
    (d / "not_a_raster.tif").write_text("this is not a GeoTIFF")
    s = index_folder(d, tmp_path / "idx", tiny_embedder, params=PARAMS, batch_size=4)
    bad = {Path(e.path.split(",")[0]).name for e in s.errors}
    assert bad == {"no_crs.tif", "not_a_raster.tif"}, s.errors
    assert all(e.error for e in s.errors)
    assert s.tiles >= 4  # the 64x64 good scene: 4 tiles
    assert s.tiles_skipped >= 4  # nodata-only: every tile below min_valid_fraction
    by_scene: dict[str, int] = {}
    for _, sid in _tiles(tmp_path / "idx"):
        by_scene[sid] = by_scene.get(sid, 0) + 1
    store = _store(tmp_path / "idx")
    try:
        names = {r["scene_id"]: r["name"] for r in store.scenes()}
        assert {r["status"] for r in store.scenes()} == {"complete"}
    finally:
        store.close()
    counts = {names[sid]: n for sid, n in by_scene.items()}
    assert not any("nodata" in n for n in counts), counts
    assert any("good" in n for n in counts)


def test_incremental_unchanged_modified_deleted(folder: Path, tmp_path: Path, tiny_embedder) -> None:
    idx = tmp_path / "idx"
    first = index_folder(folder, idx, tiny_embedder, params=PARAMS, batch_size=8)
    assert first.tiles == 18
    ids_before = dict(_tiles(idx))

    again = index_folder(folder, idx, tiny_embedder, params=PARAMS, batch_size=8)
    assert (again.tiles, again.scenes, again.scenes_skipped_unchanged) == (0, 0, 2)

    # modify one file (new pixels, new mtime) -> only that scene is re-embedded
    target = folder / "water.tif"
    write_scene(target, "urban", size=96, seed=9)
    st = target.stat()
    os.utime(target, (st.st_atime, st.st_mtime + 10))
    changed = index_folder(folder, idx, tiny_embedder, params=PARAMS, batch_size=8)
    assert (changed.scenes, changed.tiles, changed.scenes_skipped_unchanged) == (1, 9, 1)
    rows = _tiles(idx)
    assert len(rows) == 18 and len({r[0] for r in rows}) == 18
    store = _store(idx)
    try:
        assert store.count == 18
        water = store.scene_for_path(target)
        assert water is not None
        wid = water[0].scene_id
    finally:
        store.close()
    assert {t for t, s in rows if s == wid} == {t for t, s in ids_before.items() if s == wid}

    # delete a file -> its tiles are gone
    target.unlink()
    gone = index_folder(folder, idx, tiny_embedder, params=PARAMS, batch_size=8)
    assert (gone.scenes_removed, gone.tiles) == (1, 0)
    store = _store(idx)
    try:
        assert store.count == 9
        assert store.tile_ids(wid) == set()
        assert store.scene_for_path(target) is None
    finally:
        store.close()
    assert all(s != wid for _, s in _tiles(idx))


def test_cancel_finishes_batch_then_resume_completes(folder: Path, tmp_path: Path, tiny_embedder) -> None:
    idx = tmp_path / "idx"
    cancel = threading.Event()

    def stop_after_first(ev: ProgressEvent) -> None:
        if ev.tiles_done > 0:
            cancel.set()

    s = index_folder(folder, idx, tiny_embedder, params=PARAMS, batch_size=4, workers=2,
                     progress=stop_after_first, cancel=cancel)
    assert s.cancelled and s.tiles == 4
    assert len(_tiles(idx)) == 4
    store = _store(idx)
    try:
        assert store.count == 4
        assert "partial" in {r["status"] for r in store.scenes()}
    finally:
        store.close()
    rest = index_folder(folder, idx, tiny_embedder, params=PARAMS, batch_size=4)
    assert not rest.cancelled and rest.tiles == 14
    rows = _tiles(idx)
    assert len(rows) == 18 and len({r[0] for r in rows}) == 18


def test_tiling_mismatch_refused(folder: Path, tmp_path: Path, tiny_embedder) -> None:
    from geovec.backend.errors import InputError

    index_folder(folder, tmp_path / "idx", tiny_embedder, params=PARAMS)
    with pytest.raises(InputError, match="tiling"):
        index_folder(folder, tmp_path / "idx", tiny_embedder, params=TilingParams(tile_size=48))


def test_missing_folder_is_not_found(tmp_path: Path, tiny_embedder) -> None:
    from geovec.backend.errors import NotFoundError

    with pytest.raises(NotFoundError, match="nope"):
        index_folder(tmp_path / "nope", tmp_path / "idx", tiny_embedder, params=PARAMS)


def test_throughput_is_not_per_tile(folder: Path, tmp_path: Path, tiny_embedder) -> None:
    """The pipeline batches: a whole scene of 9 tiles is embedded in ceil(9/batch) forwards."""
    calls: list[int] = []
    orig = tiny_embedder.forward

    class Counting:
        def __getattr__(self, name):
            return getattr(tiny_embedder, name)

        def forward(self, batch):
            out = orig(batch)
            calls.append(int(out.shape[0]))
            return out

    t0 = time.monotonic()
    s = index_folder(folder, tmp_path / "idx", Counting(), params=PARAMS, batch_size=8)
    assert s.tiles == 18 and time.monotonic() - t0 < 300
    assert sorted(calls) == [1, 1, 8, 8]


def test_batches_sized_by_token_count(folder: Path, tmp_path: Path, tiny_embedder) -> None:
    """--batch-tokens: as many tiles per forward as fit the budget; the same tiles either way."""
    from geovec.backend.indexing.run import batch_for_tokens

    per = tiny_embedder.tokens_per_image(32, 32) + 16  # 56 px -> 2x2 merged patches + prompt
    assert tiny_embedder.tokens_per_image(32, 32) == 4
    assert batch_for_tokens(tiny_embedder, 32, 3 * per, default=16) == 3
    assert batch_for_tokens(tiny_embedder, 32, 10, default=16) == 1
    events: list[ProgressEvent] = []
    s = index_folder(folder, tmp_path / "i", tiny_embedder, params=TilingParams(tile_size=32), batch_tokens=3 * per,
                     progress=events.append)
    ref = index_folder(folder, tmp_path / "j", tiny_embedder, params=TilingParams(tile_size=32), batch_size=64)
    assert s.tiles == ref.tiles > 3
    steps = [e.tiles_done for e in events if e.tiles_done]
    assert steps and all(b - a <= 3 for a, b in zip([0, *steps], steps, strict=False))
