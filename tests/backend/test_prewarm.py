"""Pre-warming an index's SQLite pages (what it reads, stopping, vanished indexes, the server's store cache); the
sidecar's previous-checksum entries of an index with regions."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from geovec.backend.demo import write_sample_folder
from geovec.backend.index import prewarm
from geovec.backend.index.store import IndexStore
from geovec.backend.indexing import index_folder
from geovec.backend.server.state import StoreCache
from geovec.backend.types import TilingParams

SPEC = "grid=1,2;overlap=0.25"  # 5 candidates per tile


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, tiny_embedder) -> Path:
    tmp = tmp_path_factory.mktemp("prewarm")
    folder = write_sample_folder(tmp / "rasters", size=64)
    idx = tmp / "idx"
    s = index_folder(folder, idx, tiny_embedder, params=TilingParams(tile_size=32), regions=SPEC)
    assert (s.tiles, s.regions) == (12, 60)
    return idx


def test_prewarm_reads_every_tile_record_and_region_box(index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prewarm, "CHUNK", 5)  # several chunks, the last one partial
    got = prewarm.prewarm(index / "meta.sqlite")
    assert (got.tiles, got.regions, got.stopped) == (12, 60, False)


def test_prewarm_stops_when_asked_and_never_raises(index: Path, tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()
    got = prewarm.prewarm(index / "meta.sqlite", stop)
    assert got.stopped and got.tiles == 0 and got.regions == 0
    gone = prewarm.prewarm(tmp_path / "no-such-index" / "meta.sqlite")  # an index removed meanwhile
    assert (gone.tiles, gone.regions) == (0, 0)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database" * 100)
    assert prewarm.prewarm(junk).stopped


def test_tile_record_columns_precede_the_vector(index: Path) -> None:
    """A record is read from the row's first page: no column a search reads lies behind the vector blob,
    whose overflow chain SQLite would otherwise walk for every hit."""
    with sqlite3.connect(index / "meta.sqlite") as con:
        cols = [r[1] for r in con.execute("PRAGMA table_info(tiles)")]
        rcols = [r[1] for r in con.execute("PRAGMA table_info(regions)")]
    assert cols[-1] == "vector" and "sources" in cols
    assert rcols[-1] == "vector"


def test_store_cache_warms_the_stores_it_opens_and_stops_on_close(index: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(index, copy)
    cache = StoreCache(recheck_s=0.0)
    a, b = IndexStore.open(index), IndexStore.open(copy)
    cache[str(index)] = a
    cache[str(copy)] = b
    stop_a, stop_b = cache.warming[str(index)], cache.warming[str(copy)]
    assert not stop_a.is_set() and not stop_b.is_set()
    deadline = time.monotonic() + 30
    while any(t.name == "geovec-prewarm" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name == "geovec-prewarm" for t in threading.enumerate()), "the warm-up never finished"
    a2 = IndexStore.open(index)  # reopened after a checkpoint: the same file, no second warm-up
    cache[str(index)] = a2
    assert cache.warming[str(index)] is stop_a
    assert not any(t.name == "geovec-prewarm" for t in threading.enumerate())
    del cache[str(copy)]  # retired: its warm-up is told to stop
    assert stop_b.is_set() and str(copy) not in cache.warming and not stop_a.is_set()
    cache.close_all()
    assert stop_a.is_set() and not cache.warming
    off = StoreCache(prewarm=False)
    c = IndexStore.open(index)
    off[str(index)] = c
    assert not off.warming
    off.close_all()


@pytest.mark.parametrize("where", ["top", "regions"])
@pytest.mark.parametrize("bad", [{"sha256": 5, "bytes": 10}, {"sha256": "ab"}, "x"])
def test_a_malformed_previous_checksum_in_the_sidecar_is_named(index: Path, where: str, bad: object) -> None:
    import json

    from geovec.backend.errors import IndexCorruptError
    from geovec.backend.index.files import validate_sidecar

    meta = json.loads((index / "index.json").read_text())
    assert validate_sidecar(json.loads(json.dumps(meta)), index / "index.json")["regions"] is not None
    (meta if where == "top" else meta["regions"])["hnsw_previous"] = bad
    key = "hnsw_previous" if where == "top" else "regions.hnsw_previous"
    with pytest.raises(IndexCorruptError, match=rf"{key}=.* is malformed"):
        validate_sidecar(meta, index / "index.json")
