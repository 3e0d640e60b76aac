"""Damaged indexes and odd input give one clear error naming the file and what to do; --verify finds damage."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import stat
import struct
from pathlib import Path

import numpy as np
import pytest

from geovec.backend.cli import main
from geovec.backend.demo import write_sample_folder, write_scene
from geovec.backend.errors import BusyError, IndexCorruptError
from geovec.backend.index import files
from geovec.backend.index.locking import WriterLock
from geovec.backend.index.repair import repair_index
from geovec.backend.index.store import IndexStore
from geovec.backend.index.verify import verify_index
from geovec.backend.indexing import index_folder
from geovec.backend.types import TilingParams

TILE = 32


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_embedder) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clear-errors")
    folder = write_sample_folder(root / "rasters", size=64)
    index_folder(folder, root / "idx", tiny_embedder, params=TilingParams(tile_size=TILE))
    return {"root": root, "folder": folder, "idx": root / "idx"}


@pytest.fixture()
def idx(built, tmp_path: Path) -> Path:
    """A fresh copy of the built index to damage."""
    dst = tmp_path / "idx"
    shutil.copytree(built["idx"], dst)
    return dst


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("geovec: error: ") and "unexpected" not in lines[0], err
    return lines[0]


def test_json_damage_in_a_sqlite_row_names_the_database(idx: Path, capsys) -> None:
    with sqlite3.connect(idx / "meta.sqlite") as con:
        con.execute("UPDATE scenes SET sources = '{broken'")
    line = _error(capsys, "info", "--index", str(idx))
    assert str(idx / "meta.sqlite") in line and "scenes row cannot be decoded" in line and "backup" in line
    with sqlite3.connect(idx / "meta.sqlite") as con:
        con.execute("UPDATE scenes SET sources = '[]'")
        con.execute("UPDATE tiles SET bounds = '[1,'")
    store = IndexStore.open(idx)
    try:
        with pytest.raises(IndexCorruptError, match="tiles row cannot be decoded"):
            store.search(np.ones((1, store.dim), np.float32), k=3)
    finally:
        store.close()


def test_deeply_nested_sidecar_is_a_corrupt_index(idx: Path, capsys) -> None:
    (idx / "index.json").write_text("[" * 100_000 + "]" * 100_000)
    line = _error(capsys, "info", "--index", str(idx))
    assert str(idx / "index.json") in line and "nested too deeply" in line


def test_truncated_database_during_repair_says_repair_cannot_fix_it(idx: Path, capsys) -> None:
    with open(idx / "meta.sqlite", "r+b") as f:
        f.truncate(5000)
    with pytest.raises(IndexCorruptError, match="damaged .*cannot repair the database itself"):
        repair_index(idx)
    line = _error(capsys, "index", str(idx.parent), "--index", str(idx), "--repair", "--no-progress")
    assert str(idx / "meta.sqlite") in line and "new directory" in line


def test_zero_byte_database_is_named_as_empty(idx: Path, capsys) -> None:
    (idx / "meta.sqlite").write_bytes(b"")
    line = _error(capsys, "info", "--index", str(idx))
    assert f"{idx / 'meta.sqlite'} is empty (0 bytes)" in line
    with pytest.raises(IndexCorruptError, match="is empty"):
        repair_index(idx)


def test_index_being_created_is_busy_not_corrupt(idx: Path) -> None:
    (idx / "index.json").unlink()  # a create in progress: the database is there, the sidecar comes last
    lock = WriterLock.acquire(idx)
    try:
        with pytest.raises(BusyError, match="being built"):
            IndexStore.open(idx)
    finally:
        lock.release()
    with pytest.raises(IndexCorruptError, match="lacks its sidecar"):  # nobody building it: damaged
        IndexStore.open(idx)


def test_read_only_open_beside_a_live_writer_warns_nothing(idx: Path, caplog) -> None:
    writer = IndexStore.open(idx, writable=True)
    try:
        rec = writer.get(next(iter(writer.tile_ids(writer.scenes()[0]["scene_id"]))))
        from dataclasses import replace

        writer.add([replace(rec, tile_id="fresh-tile")], np.ones((1, writer.dim), np.float32))  # not checkpointed
        with caplog.at_level(logging.DEBUG, logger="geovec"):
            reader = IndexStore.open(idx)
        assert reader.count == writer.count
        reader.close()
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
        assert "not checkpointed yet" in caplog.text
    finally:
        writer._dirty = False  # leave the vector file as it was: the next open heals it
        writer.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="geovec"):
        IndexStore.open(idx).close()  # no writer now: a crash left these, so it is worth a warning
    assert "interrupted run" in caplog.text


def test_geojson_to_an_unwritable_path_fails_before_searching(built, capsys, tmp_path: Path) -> None:
    out = tmp_path / "no-such-folder" / "hits.geojson"
    line = _error(capsys, "search", "--index", str(built["idx"]), "--text", "water", "--geojson", str(out),
                  "--model", "/nonexistent-model-dir")  # would fail loading the model if the search ran first
    assert "--geojson" in line and "cannot be written" in line
    assert not out.exists()


def test_negative_exponent_coordinates_parse(built, capsys) -> None:
    code = main(["search", "--index", str(built["idx"]), "--box", "-1e300", "-1e300", "-1e299", "-1e299",
                 "--crs", "EPSG:32617"])
    _, err = capsys.readouterr()
    assert code == 1 and "expected 4 argument" not in err and "outside" in err, err


def test_info_escapes_newlines_in_names(tmp_path: Path, tiny_embedder, capsys) -> None:
    folder = tmp_path / "rasters"
    write_scene(folder / "two\nlines.tif", "water", size=64)
    index_folder(folder, tmp_path / "idx", tiny_embedder, params=TilingParams(tile_size=TILE))
    assert main(["info", "--index", str(tmp_path / "idx")]) == 0
    out = capsys.readouterr().out
    scene_lines = [ln for ln in out.splitlines() if ln.startswith("  scene ")]
    assert len(scene_lines) == 1 and "two\\nlines" in scene_lines[0]


def test_model_tiny_writes_one_file_mode(tmp_path: Path, capsys) -> None:
    assert main(["model", "tiny", str(tmp_path / "tiny")]) == 0
    modes = {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "tiny").iterdir() if p.is_file()}
    assert len(modes) == 1, modes


def test_unreadable_raster_reports_gdals_reason(tmp_path: Path, tiny_embedder) -> None:
    folder = tmp_path / "rasters"
    path = write_scene(folder / "cut.tif", "water", size=256)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 20_000)
    s = index_folder(folder, tmp_path / "idx", tiny_embedder, params=TilingParams(tile_size=TILE))
    assert s.errors, s
    text = " ".join(e.error for e in s.errors)
    assert "See previous exception" not in text and ("IReadBlock" in text or "TIFFRead" in text), text


def test_non_utf8_file_name_is_reported_and_json_output_works(tmp_path: Path, tiny_embedder, capsys) -> None:
    folder = tmp_path / "rasters"
    write_scene(folder / "ok.tif", "water", size=64)
    raw = os.fsencode(folder) + b"/caf\xe9.tif"
    shutil.copy(folder / "ok.tif", raw)
    code = main(["index", str(folder), "--index", str(tmp_path / "idx"), "--model", str(tiny_embedder.checkpoint_id),
                 "--tile-size", "32", "--json", "--no-progress"])
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert code == 1 and summary["tiles"] == 4
    (bad,) = summary["errors"]
    assert bad["path"].endswith("caf\\xe9.tif") and "not valid UTF-8" in bad["error"]


# ---------------------------------------------------------------- --verify and NaN


def _hnsw_vector_offset(path: Path, element: int) -> int:
    meta = files.read_sidecar(path)
    raw = (path / "vectors.hnsw").read_bytes()
    per_el = struct.unpack_from("<Q", raw, 24)[0]  # size_data_per_element
    links0 = 2 * meta["M"] * 4 + 4
    return 96 + element * per_el + links0


def _rewrite_sidecar(path: Path) -> None:
    meta = files.read_sidecar(path)
    fd = os.open(path / "vectors.hnsw", os.O_RDONLY)
    try:
        meta.update(hnsw_sha256=files.sha256_fd(fd), hnsw_bytes=os.fstat(fd).st_size, hnsw_previous=None)
    finally:
        os.close(fd)
    files.write_json_atomic(path / "index.json", meta)


def test_verify_passes_a_good_index_and_finds_damage(idx: Path, capsys) -> None:
    good = verify_index(idx)
    assert good.ok and good.checked == good.tiles == 12, good.lines()
    assert main(["info", "--index", str(idx), "--verify"]) == 0
    assert "result     ok" in capsys.readouterr().out

    with sqlite3.connect(idx / "meta.sqlite") as con:  # SQLite's copy of one vector changed
        label, blob = con.execute("SELECT label, vector FROM tiles ORDER BY label LIMIT 1").fetchone()
        vec = np.frombuffer(blob, "<f4").copy()
        vec[::2] *= -1
        con.execute("UPDATE tiles SET vector = ? WHERE label = ?", (vec.tobytes(), label))
    report = verify_index(idx)
    assert not report.ok and report.mismatched == [label]
    assert main(["info", "--index", str(idx), "--verify"]) == 1
    assert "differ from SQLite" in capsys.readouterr().out


def test_a_nan_vector_is_found_by_verify_and_never_a_hit(idx: Path) -> None:
    off = _hnsw_vector_offset(idx, 0)
    with open(idx / "vectors.hnsw", "r+b") as f:
        f.seek(off)
        f.write(struct.pack("<f", float("nan")) * 4)
    _rewrite_sidecar(idx)
    report = verify_index(idx)
    assert not report.ok and len(report.non_finite) == 1
    store = IndexStore.open(idx)
    try:
        hits = store.search(np.ones((1, store.dim), np.float32), k=12)[0]
        scores = [s for _, s in hits]
        assert all(np.isfinite(scores)) and len(hits) == 11  # the damaged tile is never returned
    finally:
        store.close()


def test_verify_checks_region_vectors_too(built, tmp_path: Path, tiny_embedder, capsys) -> None:
    idx = tmp_path / "ridx"
    index_folder(built["folder"], idx, tiny_embedder, params=TilingParams(tile_size=TILE), regions="grid=1,2")
    good = verify_index(idx)
    assert good.ok and good.region_check is not None and good.region_check.checked == 12 * 5, good.lines()
    with sqlite3.connect(idx / "meta.sqlite") as con:  # one region's SQLite copy changed
        label, blob = con.execute("SELECT label, vector FROM regions ORDER BY label LIMIT 1").fetchone()
        vec = np.frombuffer(blob, "<f4").copy()
        vec[::2] *= -1
        con.execute("UPDATE regions SET vector = ? WHERE label = ?", (vec.tobytes(), label))
    report = verify_index(idx)
    assert not report.ok and report.tile_check.ok and report.region_check.mismatched == [label]
    assert main(["info", "--index", str(idx), "--verify"]) == 1
    out = capsys.readouterr().out
    assert "regions    60 of 60 compared" in out and "differ from SQLite" in out
