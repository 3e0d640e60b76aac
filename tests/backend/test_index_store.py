"""IndexStore and RWLock with real hnswlib, real SQLite files and real subprocesses (no mocks)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from geovec.backend.errors import (
    BusyError,
    GeoVecError,
    IndexCorruptError,
    InputError,
    ModelMismatchError,
    NotFoundError,
)
from geovec.backend.index import opening
from geovec.backend.index.repair import repair_index
from geovec.backend.index.rwlock import RWLock
from geovec.backend.index.store import INITIAL_CAPACITY, IndexStore
from geovec.backend.types import BandRef, Scene, Stretch, TileRecord

DIM = 16
TILING = {"tile_size": 32, "overlap": 0.0, "resolution": None, "min_valid_fraction": 0.5, "bands": None,
          "percentiles": [2.0, 98.0]}
WKT = 'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],PRIMEM["Greenwich",0],' \
      'UNIT["degree",0.0174532925199433]]'


def make_scene(folder: Path, name: str = "scene", *, nbands: int = 3, nodata: float | None = 0.0) -> Scene:
    srcs = tuple(str(folder / f"{name}_B{i}.tif") for i in range(1, nbands + 1))
    return Scene(scene_id=f"sid-{name}", name=name, sources=srcs,
                 bands=tuple(BandRef(s, 1) for s in srcs), rgb=(3, 2, 1), crs_wkt=WKT,
                 transform=(0.1, 0.0, -80.0, 0.0, -0.1, 35.0), width=640, height=480, dtype="uint16",
                 nodata=nodata, fingerprint=f"fp-{name}")


STRETCH = Stretch((10.0, 20.5, 30.25), (1000.0, 2000.0, 3000.125), "percentile")


def make_records(scene: Scene, n: int, start: int = 0) -> list[TileRecord]:
    out = []
    for i in range(start, start + n):
        x0, y1 = -80.0 + i * 0.01, 35.0
        fp = f"POLYGON (({x0} {y1 - 0.01}, {x0 + 0.01} {y1 - 0.01}, {x0 + 0.01} {y1}, {x0} {y1}, {x0} {y1 - 0.01}))"
        out.append(TileRecord(tile_id=f"{scene.scene_id}-t{i:05d}", scene_id=scene.scene_id, sources=scene.sources,
                              window=(i * 32, 0, 32, 32), crs_wkt=WKT, bounds=(x0, y1 - 0.01, x0 + 0.01, y1),
                              footprint_wgs84=fp, center_lat=y1 - 0.005, center_lon=x0 + 0.005, gsd=10.0,
                              valid_fraction=0.75))
    return out


def vecs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def new_store(path: Path, **kw) -> IndexStore:
    return IndexStore.create(path, dim=DIM, preset="tiny", checkpoint="/models/tiny", tiling=TILING, **kw)


def exact(base: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    b = base / np.linalg.norm(base, axis=1, keepdims=True)
    sims = b @ (q / np.linalg.norm(q))
    order = np.argsort(-sims)[:k]
    return order, sims[order]


@pytest.fixture()
def filled(tmp_path: Path) -> tuple[Path, Scene, list[TileRecord], np.ndarray]:
    """An index with one scene of 300 tiles, checkpointed and closed."""
    idx = tmp_path / "idx"
    scene = make_scene(tmp_path)
    recs, v = make_records(scene, 300), vecs(300, 1)
    with new_store(idx) as store:
        store.upsert_scene(scene, STRETCH)
        assert store.add(recs, v) == 300
        store.complete_scene(scene.scene_id)
    return idx, scene, recs, v


def run_py(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=timeout)


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


# ---- RWLock -------------------------------------------------------------------------------------

def test_rwlock_readers_share_writer_excludes() -> None:
    lock = RWLock()
    inside = threading.Barrier(3, timeout=5)

    def reader() -> None:
        with lock.read():
            inside.wait()  # all three readers are inside at once

    ts = [threading.Thread(target=reader) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(5)
    assert not any(t.is_alive() for t in ts) and lock.readers == 0

    order: list[str] = []
    lock.acquire_read()
    w = threading.Thread(target=lambda: (lock.acquire_write(), order.append("writer"), lock.release_write()))
    w.start()
    time.sleep(0.1)
    assert order == [] and not lock.writing  # the writer waits for the reader
    order.append("reader done")
    lock.release_read()
    w.join(5)
    assert order == ["reader done", "writer"]
    with pytest.raises(RuntimeError):
        lock.release_read()
    with pytest.raises(RuntimeError):
        lock.release_write()


def test_rwlock_prefers_waiting_writer() -> None:
    lock = RWLock()
    order: list[str] = []
    lock.acquire_read()
    writer = threading.Thread(target=lambda: (lock.acquire_write(), order.append("w"), time.sleep(0.05),
                                              lock.release_write()))
    writer.start()
    time.sleep(0.1)  # the writer is now waiting
    late = threading.Thread(target=lambda: (lock.acquire_read(), order.append("r"), lock.release_read()))
    late.start()
    time.sleep(0.1)
    assert order == []  # the late reader queues behind the waiting writer
    lock.release_read()
    writer.join(5)
    late.join(5)
    assert order == ["w", "r"]


# ---- create / add / search ---------------------------------------------------------------------

def test_search_order_and_scores_match_numpy(tmp_path: Path) -> None:
    scene = make_scene(tmp_path)
    recs, v = make_records(scene, 400), vecs(400, 2)
    with new_store(tmp_path / "i") as store:
        store.upsert_scene(scene, STRETCH)
        assert store.add(recs, v) == 400 and store.count == 400
        queries = vecs(5, 3)
        results = store.search(queries, 10)
        assert len(results) == 5
        for q, hits in zip(queries, results, strict=True):
            order, sims = exact(v, q, 10)
            assert [r.tile_id for r, _ in hits] == [recs[i].tile_id for i in order]
            np.testing.assert_allclose([s for _, s in hits], sims, atol=1e-5)
        top = store.search(v[7], 1)[0][0]
        assert top[0] == recs[7] and top[1] == pytest.approx(1.0, abs=1e-5)
        assert len(store.search(queries[:1], 10_000)[0]) == 400  # never more than count
        kept = store.search(queries[:1], 5, filter=lambda tid: tid.endswith(("0", "2", "4", "6", "8")))[0]
        assert len(kept) == 5 and all(int(r.tile_id[-1]) % 2 == 0 for r, _ in kept)
        assert store.get(recs[3].tile_id) == recs[3]
        np.testing.assert_array_equal(store.vector(recs[3].tile_id), v[3])
        with pytest.raises(NotFoundError, match="nope"):
            store.get("nope")
        with pytest.raises(InputError, match=r"\(2, 16\)"):
            store.add(recs[:3], v[:2])
        with pytest.raises(InputError, match="NaN"):
            store.add(recs[:1], np.full((1, DIM), np.nan, np.float32))
        with pytest.raises(InputError, match="dimension 16"):
            store.search(np.ones((1, 8), np.float32), 3)
        with pytest.raises(InputError, match="k=0"):
            store.search(queries, 0)


def test_insert_or_ignore_never_duplicates(filled) -> None:
    idx, scene, recs, v = filled
    with IndexStore.open(idx, writable=True) as store:
        assert store.add(recs[:50], v[:50]) == 0
        more = make_records(scene, 10, start=300)
        # a batch mixing stored tiles, new tiles and a repeat inside the batch
        batch = recs[:5] + more + more[:2]
        assert store.add(batch, np.concatenate([v[:5], vecs(12, 9)])) == 10
        assert store.count == 310
        hits = store.search(v[0], 310)[0]
        assert len({r.tile_id for r, _ in hits}) == len(hits) == 310
    with sqlite3.connect(idx / "meta.sqlite") as con:
        n, distinct, labels = con.execute("SELECT COUNT(*), COUNT(DISTINCT tile_id), COUNT(DISTINCT label) "
                                          "FROM tiles").fetchone()
    assert n == distinct == labels == 310
    assert json.loads((idx / "index.json").read_text())["count"] == 310


def test_capacity_grows_geometrically(tmp_path: Path) -> None:
    scene = make_scene(tmp_path)
    with new_store(tmp_path / "i") as store:
        store.upsert_scene(scene, STRETCH)
        caps = set()
        n = 0
        for b in range(25):  # 2500 tiles in batches of 100
            assert store.add(make_records(scene, 100, start=n), vecs(100, 100 + b)) == 100
            n += 100
            caps.add(store._hnsw.get_max_elements())
        assert caps == {INITIAL_CAPACITY, 2 * INITIAL_CAPACITY, 4 * INITIAL_CAPACITY}
        assert store.count == 2500
        assert len(store.search(vecs(1, 5), 20)[0]) == 20


# ---- scenes ------------------------------------------------------------------------------------

def test_scene_round_trip_status_and_paths(tmp_path: Path) -> None:
    idx = tmp_path / "i"
    a, b = make_scene(tmp_path, "a"), make_scene(tmp_path / "sub", "b", nbands=1, nodata=None)
    with new_store(idx) as store:
        assert store.scene_status(a.scene_id) is None and store.scene(a.scene_id) is None
        store.upsert_scene(a, STRETCH)
        store.upsert_scene(b, Stretch((0.0, 0.0, 0.0), (255.0, 255.0, 255.0), "identity"))
        assert store.scene_status(a.scene_id) == ("fp-a", "partial")
        store.complete_scene(a.scene_id)
        assert store.scene_status(a.scene_id) == ("fp-a", "complete")
        store.upsert_scene(a, STRETCH)  # upsert again -> partial
        assert store.scene_status(a.scene_id) == ("fp-a", "partial")
        with pytest.raises(NotFoundError):
            store.complete_scene("missing")
        store.add(make_records(a, 4), vecs(4, 1))
    with IndexStore.open(idx) as store:
        assert store.scene(a.scene_id) == (a, STRETCH)
        got_b = store.scene(b.scene_id)
        assert got_b is not None and got_b[0] == b and got_b[1].method == "identity"
        rows = {r["scene_id"]: r for r in store.scenes()}
        assert rows[a.scene_id]["sources"] == list(a.sources) and isinstance(rows[a.scene_id]["sources"], list)
        assert (rows[a.scene_id]["status"], rows[a.scene_id]["tiles"], rows[b.scene_id]["tiles"]) == ("partial", 4, 0)
        assert store.tile_ids(a.scene_id) == {r.tile_id for r in make_records(a, 4)}
        # any source, as an absolute, relative or dotted path
        os.chdir(tmp_path)
        assert store.scene_for_path(Path(a.sources[1]).name) == (a, STRETCH)
        assert store.scene_for_path(str(tmp_path / "sub" / ".." / "sub" / "b_B1.tif"))[0] == b  # type: ignore[index]
        assert store.scene_for_path(tmp_path / "other.tif") is None
        with pytest.raises(InputError, match="read-only"):
            store.upsert_scene(a, STRETCH)


def test_delete_scene(filled, tmp_path: Path) -> None:
    idx, scene, recs, v = filled
    other = make_scene(tmp_path, "other")
    with IndexStore.open(idx, writable=True) as store:
        store.upsert_scene(other, STRETCH)
        store.add(make_records(other, 20), vecs(20, 7))
        assert store.count == 320
        assert store.delete_scene(scene.scene_id) == 300
        assert store.count == 20 and store.scene(scene.scene_id) is None and store.tile_ids(scene.scene_id) == set()
        hits = store.search(v[0], 50)[0]
        assert len(hits) == 20 and {r.scene_id for r, _ in hits} == {other.scene_id}
        assert store.delete_scene(scene.scene_id) == 0
    stamp = (idx / "vectors.hnsw").stat().st_mtime_ns, (idx / "index.json").stat().st_mtime_ns
    IndexStore.open(idx, writable=True).close()  # nothing changed: no checkpoint rewrites the files
    assert ((idx / "vectors.hnsw").stat().st_mtime_ns, (idx / "index.json").stat().st_mtime_ns) == stamp
    with IndexStore.open(idx) as store:
        assert store.count == 20 and store.scene_for_path(scene.sources[0]) is None
        assert {r.scene_id for r, _ in store.search(v[:3], 30)[2]} == {other.scene_id}


# ---- persistence, healing, corruption, repair -------------------------------------------------

def test_checkpoint_and_reopen(filled) -> None:
    idx, _, recs, v = filled
    meta = json.loads((idx / "index.json").read_text())
    assert (meta["count"], meta["max_label"], meta["dim"], meta["space"]) == (300, 299, DIM, "cosine")
    assert meta["hnsw_sha256"] == sha(idx / "vectors.hnsw")
    assert meta["hnsw_bytes"] == (idx / "vectors.hnsw").stat().st_size
    assert (meta["preset"], meta["checkpoint"], meta["tiling"]) == ("tiny", "/models/tiny", TILING)
    with IndexStore.open(idx) as store:
        assert store.count == 300 and store.dim == DIM and store.meta["count"] == 300
        order, _ = exact(v, v[11], 5)
        assert [r.tile_id for r, _ in store.search(v[11], 5)[0]] == [recs[i].tile_id for i in order]
    assert not list(idx.glob("*.tmp-*"))


def test_read_only_open_writes_nothing(filled) -> None:
    idx, _, _, v = filled
    before = {p.name: (sha(p), p.stat().st_mtime_ns) for p in idx.iterdir() if not p.name.startswith("meta.sqlite")}
    store = IndexStore.open(idx)
    store.search(v[:2], 3)
    store.scenes()
    with pytest.raises(InputError, match="read-only"):
        store.add(make_records(make_scene(idx), 1), v[:1])
    store.close()
    store.close()  # idempotent
    with pytest.raises(GeoVecError, match="closed"):
        store.search(v[:1], 1)
    after = {p.name: (sha(p), p.stat().st_mtime_ns) for p in idx.iterdir() if not p.name.startswith("meta.sqlite")}
    assert after == before


CRASH = """
import os, signal, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_index_store import make_records, make_scene, vecs
from geovec.backend.index.store import IndexStore
store = IndexStore.open(sys.argv[1], writable=True)
scene = make_scene(__import__("pathlib").Path(sys.argv[1]).parent)
store.add(make_records(scene, 50, start=300), vecs(50, 42))  # committed to SQLite, not checkpointed
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_crash_after_commit_before_checkpoint_is_healed(filled) -> None:
    idx, scene, recs, _ = filled
    side, hnsw = sha(idx / "index.json"), sha(idx / "vectors.hnsw")
    r = run_py(CRASH.format(tests=str(Path(__file__).parent)), str(idx))
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert (sha(idx / "index.json"), sha(idx / "vectors.hnsw")) == (side, hnsw)  # no checkpoint happened
    new = make_records(scene, 50, start=300)
    nv = vecs(50, 42)
    with IndexStore.open(idx) as ro:  # heals in memory, writes nothing
        assert ro.count == 350
        assert ro.search(nv[3], 1)[0][0][0] == new[3]
    assert sha(idx / "vectors.hnsw") == hnsw
    with IndexStore.open(idx, writable=True) as store:  # the kernel dropped the dead writer's lock
        assert store.count == 350 and store.add(new, nv) == 0
    meta = json.loads((idx / "index.json").read_text())
    assert meta["count"] == 350 and meta["hnsw_sha256"] == sha(idx / "vectors.hnsw") != hnsw


def test_labels_deleted_in_sqlite_but_live_in_an_old_vector_file(filled, tmp_path: Path) -> None:
    idx, scene, _, v = filled
    old_side, old_hnsw = (idx / "index.json").read_bytes(), (idx / "vectors.hnsw").read_bytes()
    other = make_scene(tmp_path, "other")
    with IndexStore.open(idx, writable=True) as store:
        store.upsert_scene(other, STRETCH)
        store.add(make_records(other, 10), vecs(10, 8))
        store.delete_scene(scene.scene_id)
    # put back the vector file + sidecar of before the delete (as if both checkpoints were lost)
    (idx / "index.json").write_bytes(old_side)
    (idx / "vectors.hnsw").write_bytes(old_hnsw)
    for writable in (False, True):
        with IndexStore.open(idx, writable=writable) as store:
            assert store.count == 10
            hits = store.search(v[0], 10)[0]
            assert len(hits) == 10 and {r.scene_id for r, _ in hits} == {other.scene_id}


@pytest.mark.parametrize("renamed", [True, False])
def test_reader_during_the_last_checkpoint_is_quiet_a_crash_is_not(filled, renamed: bool, caplog,
                                                                    monkeypatch) -> None:
    """A reader that opened the previous vector file while the writer's last checkpoint renamed the new
    one in (the writer gone, its lock free) saw a live checkpoint: no 'interrupted run' warning. When
    the rename never comes (a crash), the warning stays."""
    import logging

    idx, scene, _, _ = filled
    old = (idx / "vectors.hnsw").read_bytes()
    with IndexStore.open(idx, writable=True) as store:
        store.add(make_records(scene, 5, start=300), vecs(5, 3))
    new = (idx / "vectors.hnsw").read_bytes()
    (idx / "vectors.hnsw").write_bytes(old)  # the sidecar vouches for the new file; the rename is pending

    checked = opening.renamed_in

    def writer_renames_as_the_reader_checks(p: Path, meta: dict, *args, **kwargs) -> bool:  # noqa: ANN002, ANN003
        if renamed:  # the writer's os.replace lands after the reader opened the previous file
            tmp = idx / "vectors.hnsw.tmp-test"
            tmp.write_bytes(new)
            os.replace(tmp, idx / "vectors.hnsw")
        return checked(p, meta, *args, **kwargs)

    monkeypatch.setattr(opening, "renamed_in", writer_renames_as_the_reader_checks)
    with caplog.at_level(logging.DEBUG, logger="geovec"), IndexStore.open(idx) as store:
        assert store.count == 305
    said = [r for r in caplog.records if "re-added 5 tile(s)" in r.getMessage()]
    assert len(said) == 1
    assert ("interrupted run" in said[0].getMessage()) is not renamed
    assert (said[0].levelno == logging.WARNING) is not renamed


def test_interrupted_checkpoint_previous_file_is_accepted(filled) -> None:
    """A crash between writing the sidecar and renaming the new vector file leaves a valid index."""
    idx, scene, _, _ = filled
    old = (idx / "vectors.hnsw").read_bytes()
    with IndexStore.open(idx, writable=True) as store:
        store.add(make_records(scene, 5, start=300), vecs(5, 3))
    (idx / "vectors.hnsw").write_bytes(old)  # the sidecar now vouches for the new file, the old one is back
    meta = json.loads((idx / "index.json").read_text())
    assert meta["hnsw_previous"]["sha256"] == hashlib.sha256(old).hexdigest()
    with IndexStore.open(idx) as store:
        assert store.count == 305


@pytest.mark.parametrize("case", ["truncated", "flipped", "missing_hnsw", "bad_json", "missing_key", "wrong_dim",
                                  "bad_space", "wrong_type", "db_dim"])
def test_corruption_is_a_clear_error_before_load(filled, case: str) -> None:
    idx = filled[0]
    side, hnsw = idx / "index.json", idx / "vectors.hnsw"
    meta = json.loads(side.read_text())
    data = hnsw.read_bytes()
    want = "vectors.hnsw"
    if case == "truncated":
        hnsw.write_bytes(data[: len(data) // 3])
    elif case == "flipped":
        pos = len(data) // 2
        hnsw.write_bytes(data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1 :])
        want = "SHA-256"
    elif case == "missing_hnsw":
        hnsw.unlink()
    elif case == "bad_json":
        side.write_text("{not json")
        want = "index.json"
    elif case == "missing_key":
        del meta["hnsw_sha256"]
        side.write_text(json.dumps(meta))
        want = "hnsw_sha256"
    elif case == "wrong_dim":
        meta["dim"] = 32
        side.write_text(json.dumps(meta))
        want = "dim"
    elif case == "bad_space":
        meta["space"] = "l2"
        side.write_text(json.dumps(meta))
        want = "space"
    elif case == "wrong_type":
        meta["count"] = "300"
        side.write_text(json.dumps(meta))
        want = "count"
    elif case == "db_dim":
        with sqlite3.connect(idx / "meta.sqlite") as con:
            con.execute("UPDATE info SET value = '8' WHERE key = 'dim'")
        want = "meta.sqlite"
    with pytest.raises(IndexCorruptError, match=want) as err:
        IndexStore.open(idx)
    assert "--repair" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(IndexCorruptError):
        IndexStore.open(idx, writable=True)
    if case not in ("bad_json", "missing_key", "wrong_dim", "bad_space", "wrong_type", "db_dim"):
        repair_index(idx)  # the vector file is rebuilt from SQLite
        with IndexStore.open(idx) as store:
            assert store.count == 300
            assert store.search(filled[3][5], 1)[0][0][0] == filled[2][5]


def test_not_an_index_is_not_found(tmp_path: Path) -> None:
    for p in (tmp_path / "nope", tmp_path):
        with pytest.raises(NotFoundError, match="no index"):
            IndexStore.open(p)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotFoundError):
        IndexStore.open(tmp_path / "file")


def test_repair_rebuilds_vectors_and_sidecar(filled) -> None:
    idx, _, recs, v = filled
    (idx / "index.json").write_text("{not json")
    (idx / "vectors.hnsw").write_bytes(b"\0" * 100)
    repair_index(idx)
    with IndexStore.open(idx) as store:
        assert store.count == 300 and store.meta["tiling"] == TILING and store.meta["max_label"] == 299
        order, _ = exact(v, v[42], 3)
        assert [r.tile_id for r, _ in store.search(v[42], 3)[0]] == [recs[i].tile_id for i in order]
    with IndexStore.open(idx, writable=True) as store:  # labels continue after the old ones
        assert store.add(make_records(filled[1], 1, start=999), vecs(1, 0)) == 1
    with sqlite3.connect(idx / "meta.sqlite") as con:
        assert con.execute("SELECT MAX(label) FROM tiles").fetchone()[0] == 300


CRAFTED = """
import struct, sys
from geovec.backend.errors import IndexCorruptError
from geovec.backend.index.store import IndexStore
try:
    IndexStore.open(sys.argv[1])
except IndexCorruptError as e:
    print("refused:", e)
    sys.exit(3)
print("loaded")
"""


def test_crafted_file_with_matching_checksum_is_refused(filled) -> None:
    """nmslib/hnswlib#673: max_elements < cur_element_count; the sidecar is forged to match the file."""
    idx = filled[0]
    hnsw = idx / "vectors.hnsw"
    data = bytearray(hnsw.read_bytes())
    data[8:16] = (1).to_bytes(8, "little")  # header max_elements_ = 1 (< 300 elements)
    hnsw.write_bytes(bytes(data))
    meta = json.loads((idx / "index.json").read_text())
    meta.update(hnsw_sha256=hashlib.sha256(data).hexdigest(), hnsw_bytes=len(data))
    (idx / "index.json").write_text(json.dumps(meta))
    r = run_py(CRAFTED, str(idx))
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert "room for 1" in r.stdout


# ---- writers, model mismatch, concurrency -------------------------------------------------------

SECOND_WRITER = """
import sys
from geovec.backend.errors import BusyError
from geovec.backend.index.store import IndexStore
try:
    IndexStore.open(sys.argv[1], writable=True).close()
except BusyError as e:
    print(e)
    sys.exit(4)
print("opened")
"""


def test_second_writer_is_busy(filled) -> None:
    idx = filled[0]
    store = IndexStore.open(idx, writable=True)
    try:
        r = run_py(SECOND_WRITER, str(idx))
        assert r.returncode == 4, r.stderr
        assert f"being written by another process (pid {os.getpid()})" in r.stdout
        with pytest.raises(BusyError):
            IndexStore.open(idx, writable=True)
        with IndexStore.open(idx) as ro:  # readers take no lock
            assert ro.count == 300
    finally:
        store.close()
    r = run_py(SECOND_WRITER, str(idx))
    assert r.returncode == 0 and "opened" in r.stdout, r.stderr


def test_open_or_create_refuses_another_model(filled) -> None:
    idx = filled[0]
    for kw, words in (({"preset": "gme-qwen2vl-2b"}, ["'tiny'", "'gme-qwen2vl-2b'"]),
                      ({"dim": 32}, ["16-d", "32-d"]),
                      ({"checkpoint": "/other"}, ["'/models/tiny'", "'/other'"])):
        args = {"dim": DIM, "preset": "tiny", "checkpoint": "/models/tiny", "tiling": TILING, **kw}
        with pytest.raises(ModelMismatchError) as err:
            IndexStore.open_or_create(idx, **args)
        assert all(w in str(err.value) for w in words) and err.value.hint
    with IndexStore.open_or_create(idx, dim=DIM, preset="tiny", checkpoint="/models/tiny", tiling=TILING) as s:
        assert s.count == 300  # the lock was released by the refused opens
    with pytest.raises(InputError, match="already exists"):
        new_store(idx)


def test_concurrent_searches_while_a_thread_adds(tmp_path: Path) -> None:
    scene = make_scene(tmp_path)
    store = new_store(tmp_path / "i")
    store.upsert_scene(scene, STRETCH)
    store.add(make_records(scene, 200), vecs(200, 0))
    errors: list[BaseException] = []
    stop = threading.Event()
    searched = [0]

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                hits = store.search(rng.standard_normal((2, DIM)).astype(np.float32), 8)
                for row in hits:
                    scores = [s for _, s in row]
                    assert len(row) == 8 and scores == sorted(scores, reverse=True)
                    assert all(-1.0 <= s <= 1.0 for s in scores)
                    assert all(r.scene_id == scene.scene_id for r, _ in row)
                searched[0] += 1
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    readers = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    for t in readers:
        t.start()
    try:
        for b in range(20):  # 2000 more tiles, crossing two capacity doublings
            store.add(make_records(scene, 100, start=200 + 100 * b), vecs(100, 50 + b))
            if b % 7 == 0:
                store.checkpoint()
    finally:
        stop.set()
        for t in readers:
            t.join(30)
    assert not errors, errors[0]
    assert searched[0] > 0 and store.count == 2200
    store.close()


def test_read_only_store_survives_another_writer(filled, tmp_path: Path) -> None:
    idx, scene, recs, v = filled
    ro = IndexStore.open(idx)
    other = make_scene(tmp_path, "other")
    with IndexStore.open(idx, writable=True) as w:
        w.upsert_scene(other, STRETCH)
        w.add(make_records(other, 30), vecs(30, 11))
        w.checkpoint()
        hits = ro.search(v[0], 5)[0]  # the old store still answers from the graph it loaded
        assert hits[0][0] == recs[0] and len(hits) == 5
        w.delete_scene(scene.scene_id)
        assert ro.search(v[:2], 5) == [[], []]  # deleted tiles drop out; its graph knows no others
    assert ro.search(v[:2], 5) == [[], []]
    assert [r["scene_id"] for r in ro.scenes()] == [other.scene_id]  # SQLite reads are current
    ro.close()
    with IndexStore.open(idx) as fresh:
        assert fresh.count == 30


def test_missing_sidecar(filled, tmp_path: Path) -> None:
    idx = filled[0]
    (idx / "index.json").unlink()
    with pytest.raises(IndexCorruptError, match="lacks its sidecar"):
        IndexStore.open(idx)
    with pytest.raises(IndexCorruptError, match="holds 300 tiles"):  # never wiped by a create
        IndexStore.open_or_create(idx, dim=DIM, preset="tiny", checkpoint="/models/tiny", tiling=TILING)
    repair_index(idx)  # the sidecar comes back from SQLite's info table
    with IndexStore.open(idx) as store:
        assert store.count == 300 and store.meta["preset"] == "tiny"
    # a create that died before writing its sidecar (empty database) is simply redone
    crashed = tmp_path / "crashed"
    new_store(crashed).close()
    (crashed / "index.json").unlink()
    with IndexStore.open_or_create(crashed, dim=DIM, preset="tiny", checkpoint="/models/tiny", tiling=TILING) as s:
        assert s.count == 0
    assert (crashed / "index.json").exists()


WRITER_LOOP = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_index_store import STRETCH, make_records, make_scene, vecs
from geovec.backend.index.store import IndexStore
store = IndexStore.open(sys.argv[1], writable=True)
scene = make_scene(Path(sys.argv[1]).parent, "loop")
store.upsert_scene(scene, STRETCH)
print("ready", flush=True)
for b in range(40):
    store.add(make_records(scene, 25, start=25 * b), vecs(25, 1000 + b))
    store.checkpoint()
store.close()
"""


def test_readers_in_this_process_while_another_process_checkpoints(filled) -> None:
    """Opening read-only at any moment of another process's checkpoints never sees a half-written index."""
    idx, _, _, v = filled
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER_LOOP.format(tests=str(Path(__file__).parent))),
                             str(idx)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        opened, counts = 0, []
        while proc.poll() is None:
            with IndexStore.open(idx) as ro:
                counts.append(ro.count)
                hits = ro.search(v[1], 3)[0]
                assert len(hits) == 3 and hits[0][1] >= hits[1][1] >= hits[2][1]
                opened += 1
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    assert opened >= 3 and counts == sorted(counts) and counts[-1] <= 1300
    with IndexStore.open(idx) as ro:
        assert ro.count == 1300
