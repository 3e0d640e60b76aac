"""IndexStore: an index directory of hnswlib vectors + SQLite metadata + a JSON sidecar.

Layout and rules (docs/DESIGN.md "Index"):

* ``meta.sqlite`` (WAL) is the source of truth: scenes, tiles and every tile's
  vector. ``add`` commits rows first, then adds to hnswlib; labels come from a
  counter in SQLite and are never reused.
* ``vectors.hnsw`` is saved by :meth:`IndexStore.checkpoint`: written to a temp
  file and fsynced, then ``index.json`` is replaced (recording the new file's
  SHA-256 and size, and the previous file's as ``hnsw_previous``), then the temp
  file is renamed over ``vectors.hnsw``. A reader or a crash at any point sees a
  vector file the sidecar vouches for.
* Opening (:mod:`.opening`) validates the sidecar, the vector file's size, SHA-256,
  header and graph **before** hnswlib loads it (nmslib/hnswlib#673), then heals the
  loaded graph against SQLite: labels SQLite has but the file lacks (a crash after a
  commit, before a checkpoint) are re-added from SQLite, labels SQLite no longer
  has are marked deleted. Read-only stores heal in memory only.
* Region vectors live in the store's :class:`~.store_regions.RegionIndex` (:mod:`.regions`).
* One writer per directory across processes (``writer.lock``, fcntl); within a
  process an :class:`RWLock` guards every hnswlib call.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np

from ..errors import GeoVecError, IndexCorruptError, InputError, ModelMismatchError, NotFoundError
from ..types import Box, Scene, Stretch, TileRecord, Window
from . import db, files, opening, store_regions
from . import regions as rdb
from .files import DB, HNSW, LOCK, SIDECAR, repair_hint
from .load import grown_capacity
from .locking import WriterLock
from .opening import DEFAULT_EF_SEARCH, INITIAL_CAPACITY, Opened, now, sql_error
from .regions import RegionRow
from .rwlock import RWLock
from .store_regions import RegionIndex

log = logging.getLogger(__name__)

__all__ = ["IndexStore", "SIDECAR", "HNSW", "DB", "LOCK", "INITIAL_CAPACITY", "DEFAULT_EF_SEARCH"]


def _fsync_sha(path: Path) -> tuple[str, int]:
    """fsync a written file; its SHA-256 and size."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        return files.sha256_fd(fd), os.fstat(fd).st_size
    finally:
        os.close(fd)


class IndexStore:
    """One index directory, opened read-only or as its single writer. See the module docstring.

    Region vectors (when the index stores them) follow the same rules (see :mod:`.regions`);
    the store owns them as :attr:`region_index` (:class:`~.store_regions.RegionIndex`).
    """

    def __init__(self, path: Path, state: Opened, *, writable: bool, lock: WriterLock | None) -> None:
        """A store over the validated, loaded and healed ``state`` (see :mod:`.opening`); holds ``lock``."""
        self.path = path
        self.meta = state.meta
        self.dim = int(state.meta["dim"])
        self.writable = writable
        self._hnsw: hnswlib.Index | None = state.index
        self._lock = lock
        self._disk = state.disk
        self._live = state.live
        self._next_label = state.next_label
        self._ef = int(state.meta["ef_search"])
        self._rw = RWLock()
        self._wlock = threading.RLock()
        self._local = threading.local()
        self._cons: list[sqlite3.Connection] = []
        self._cons_lock = threading.Lock()
        self._dirty = state.disk is None or state.dirty
        self._closed = False
        self.region_index = RegionIndex(path, self.dim, state.regions, rw=self._rw, sql=self._sql)
        state.index.set_ef(self._ef)

    # ---- opening (validation, loading and healing: :mod:`.opening`) ------------------------------
    @classmethod
    def create(cls, path: str | Path, *, dim: int, preset: str, checkpoint: str, tiling: dict[str, Any],
               M: int = 16, ef_construction: int = 200, model: dict[str, Any] | None = None) -> IndexStore:
        """Create an empty index at ``path`` (a new or empty folder) and hold its writer lock.

        ``model`` is the embedder's identity (``Embedder.identity``), recorded so that
        searching or re-indexing with another model is refused (:mod:`..binding`).
        """
        p = opening.check_create_args(path, dim=dim, M=M, ef_construction=ef_construction, tiling=tiling)
        p.mkdir(parents=True, exist_ok=True)
        lock = WriterLock.acquire(p)
        try:
            state = opening.create_files(p, dim=dim, preset=preset, checkpoint=checkpoint, tiling=tiling, M=M,
                                         ef_construction=ef_construction, model=model)
            store = cls(p, state, writable=True, lock=lock)
            store.checkpoint()  # the sidecar is written last: the index exists once it is complete
        except BaseException:
            lock.release()
            raise
        log.info("created index %s (dim %d, M %d, ef_construction %d)", p, dim, M, ef_construction)
        return store

    @classmethod
    def open(cls, path: str | Path, *, writable: bool = False) -> IndexStore:
        """Open an existing index; validates every file before hnswlib loads the vectors.

        Raises:
            NotFoundError: ``path`` is not an index directory.
            IndexCorruptError: a file is missing, truncated, tampered with or inconsistent.
            BusyError: ``writable`` and another writer holds the index.
        """
        p = opening.check_index_dir(path, writable=writable)
        lock = WriterLock.acquire(p) if writable else None
        try:
            if lock is not None:
                opening.remove_checkpoint_leftovers(p)
            store = cls(p, opening.load(p, writable=writable), writable=writable, lock=lock)
            if writable:
                with store._sql("adding the region tables") as con:
                    rdb.ensure_schema(con)
            return store
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    @classmethod
    def open_or_create(cls, path: str | Path, *, dim: int, preset: str, checkpoint: str,
                       tiling: dict[str, Any], model: dict[str, Any] | None = None,
                       force: bool = False) -> IndexStore:
        """Open ``path`` for writing, or create it; refuses an index built with another model or dim.

        Same model: the same weights fingerprint when both sides record one, else the same
        checkpoint name, and the same preset (``force`` accepts another model, never another dim).
        """
        from ..binding import check_identity, recorded_identity

        p = Path(path).expanduser()
        if not (p / SIDECAR).exists():  # new, or a create that crashed before its sidecar
            return cls.create(p, dim=dim, preset=preset, checkpoint=checkpoint, tiling=tiling, model=model)
        store = cls.open(p, writable=True)
        current = {**(model or {}), "preset": preset, "checkpoint": checkpoint}
        try:
            check_identity(recorded_identity(store.meta), current, index=str(p), force=force,
                           dims=(int(store.dim), int(dim)))
        except ModelMismatchError:
            store.close()
            raise
        return store

    # ---- plumbing --------------------------------------------------------------------------
    def _con(self) -> sqlite3.Connection:
        """This thread's SQLite connection (opened on first use, closed by :meth:`close`)."""
        if self._closed:
            raise GeoVecError(f"index {self.path} is closed", "open it again")
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            try:
                con = db.connect(self.path / DB, readonly=not self.writable)
            except sqlite3.Error as e:
                raise sql_error(e, self.path, "connecting") from e
            with self._cons_lock:
                self._cons.append(con)
            self._local.con = con
        return con

    @contextmanager
    def _sql(self, what: str) -> Iterator[sqlite3.Connection]:
        try:
            yield self._con()
        except sqlite3.Error as e:
            raise sql_error(e, self.path, what) from e
        except db.RowError as e:
            raise IndexCorruptError(f"{self.path / DB}: {e} ({what})", files.rebuild_hint(self.path)) from e

    def _need_writable(self, what: str) -> None:
        if self._closed:
            raise GeoVecError(f"index {self.path} is closed", "open it again")
        if not self.writable:
            raise InputError(f"cannot {what}: index {self.path} is open read-only",
                             "open it with IndexStore.open(path, writable=True)")

    @property
    def count(self) -> int:
        """Live tiles (searchable vectors)."""
        return self._live

    # ---- scenes ----------------------------------------------------------------------------
    def scene_status(self, scene_id: str) -> tuple[str, str] | None:
        """``(fingerprint, status)`` of a stored scene, or None."""
        with self._sql("reading a scene") as con:
            row = con.execute("SELECT fingerprint, status FROM scenes WHERE scene_id = ?", (scene_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def upsert_scene(self, scene: Scene, stretch: Stretch) -> None:
        """Insert or replace ``scene`` with its stretch; its status becomes 'partial'."""
        self._need_writable("store a scene")
        cols = [c.strip() for c in db.SCENE_COLS.split(",")]
        update = ", ".join(f"{c} = excluded.{c}" for c in cols[1:])
        paths = {s for s in scene.sources} | {str(Path(s).expanduser().resolve()) for s in scene.sources}
        with self._wlock, self._sql("storing a scene") as con, db.transaction(con):
            con.execute(f"INSERT INTO scenes({db.SCENE_COLS}) VALUES ({','.join('?' * len(cols))}) "
                        f"ON CONFLICT(scene_id) DO UPDATE SET {update}",
                        db.scene_params(scene, stretch, "partial", now()))
            con.execute("DELETE FROM scene_paths WHERE scene_id = ?", (scene.scene_id,))
            con.executemany("INSERT OR IGNORE INTO scene_paths(path, scene_id) VALUES (?, ?)",
                            [(q, scene.scene_id) for q in sorted(paths)])

    def complete_scene(self, scene_id: str) -> None:
        """Mark a stored scene 'complete' (NotFoundError if it is not stored)."""
        self._need_writable("complete a scene")
        with self._wlock, self._sql("completing a scene") as con, db.transaction(con):
            n = con.execute("UPDATE scenes SET status = 'complete', updated = ? WHERE scene_id = ?",
                            (now(), scene_id)).rowcount
        if n == 0:
            raise NotFoundError(f"scene {scene_id!r} is not in index {self.path}", "upsert_scene() it first")

    def delete_scene(self, scene_id: str) -> int:
        """Delete a scene and its tiles (marked deleted in hnswlib); returns the tiles deleted."""
        self._need_writable("delete a scene")
        with self._wlock:
            with self._sql("deleting a scene") as con, db.transaction(con):
                labels = [r[0] for r in con.execute("SELECT label FROM tiles WHERE scene_id = ?", (scene_id,))]
                region_labels = self.region_index.delete_rows(con, labels)
                con.execute("DELETE FROM tiles WHERE scene_id = ?", (scene_id,))
                con.execute("DELETE FROM scenes WHERE scene_id = ?", (scene_id,))
                con.execute("DELETE FROM scene_paths WHERE scene_id = ?", (scene_id,))
            with self._rw.write():
                assert self._hnsw is not None
                for label in labels:
                    try:
                        self._hnsw.mark_deleted(label)
                    except RuntimeError:  # not in the graph (never checkpointed) or already deleted
                        log.debug("label %d was not live in hnsw", label)
                self._live -= len(labels)
                self.region_index.mark_deleted(region_labels)
            self._dirty = self._dirty or bool(labels)
        return len(labels)

    def scenes(self) -> list[dict[str, Any]]:
        """Every stored scene as a dict (scene_id, name, sources list, status, fingerprint, ..., tiles)."""
        with self._sql("listing scenes") as con:
            rows = con.execute(f"SELECT {db.SCENE_COLS}, (SELECT COUNT(*) FROM tiles t WHERE t.scene_id = "
                               "scenes.scene_id) FROM scenes ORDER BY name, scene_id").fetchall()
            return [db.scene_dict(r[:-1], int(r[-1])) for r in rows]

    def scene(self, scene_id: str) -> tuple[Scene, Stretch] | None:
        """The stored ``(Scene, Stretch)`` of ``scene_id``, or None."""
        with self._sql("reading a scene") as con:
            row = con.execute(f"SELECT {db.SCENE_COLS} FROM scenes WHERE scene_id = ?", (scene_id,)).fetchone()
            return db.scene_from_row(row) if row else None

    def scene_for_path(self, path: str | Path) -> tuple[Scene, Stretch] | None:
        """The stored scene one of whose sources is ``path`` (compared as resolved absolute paths)."""
        keys = [str(path), str(Path(path).expanduser().resolve())]
        with self._sql("finding a scene") as con:
            row = con.execute("SELECT scene_id FROM scene_paths WHERE path IN (?, ?) ORDER BY scene_id LIMIT 1",
                              keys).fetchone()
        return self.scene(row[0]) if row else None

    def tile_ids(self, scene_id: str) -> set[str]:
        """The tile ids stored for ``scene_id``."""
        with self._sql("listing tiles") as con:
            return {r[0] for r in con.execute("SELECT tile_id FROM tiles WHERE scene_id = ?", (scene_id,))}

    # ---- tiles -----------------------------------------------------------------------------
    def add(self, records: Sequence[TileRecord], vectors: np.ndarray,
            regions: Sequence[tuple[Any, Any]] | None = None) -> int:
        """Store tiles and their vectors; a tile id already stored is skipped. Returns tiles added.

        One SQLite transaction (INSERT OR IGNORE by tile_id, labels from the counter),
        then hnswlib ``add_items`` of the rows actually inserted, growing capacity x2.
        ``regions`` (one ``(boxes (K, 4), vectors (K, dim))`` per record, for an index with
        regions) are committed in the same transaction as their tile.
        """
        if regions is not None and len(regions) != len(records):
            raise InputError(f"{len(regions)} region sets for {len(records)} tiles", "give one per tile")
        self._need_writable("add tiles")
        vecs = rdb.check_vectors(vectors, self.dim, len(records), "vectors")
        if not len(records):
            return 0
        with self._wlock:
            keep: list[int] = []
            labels: list[int] = []
            nxt = self._next_label
            rnext = self.region_index.next_label
            rlabels: list[int] = []
            rvecs: list[np.ndarray] = []
            with self._sql("adding tiles") as con, db.transaction(con):
                for i, rec in enumerate(records):
                    if con.execute(db.INSERT_TILE, db.tile_params(rec, nxt, vecs[i])).rowcount == 1:
                        con.execute("INSERT OR REPLACE INTO tiles_rtree VALUES (?, ?, ?, ?, ?)",
                                    (nxt, *rdb.rtree_bounds(rec.footprint_wgs84)))
                        if regions is not None:
                            got = self.region_index.insert(con, nxt, regions[i][0], regions[i][1], rnext)
                            rnext += len(got)
                            rlabels += got
                            if got:
                                rvecs.append(np.asarray(regions[i][1], dtype=np.float32).reshape(len(got), -1))
                        keep.append(i)
                        labels.append(nxt)
                        nxt += 1
                con.execute("INSERT OR REPLACE INTO info(key, value) VALUES ('next_label', ?)", (str(nxt),))
                if rlabels:
                    con.execute("INSERT OR REPLACE INTO info(key, value) VALUES ('next_region_label', ?)",
                                (str(rnext),))
            self._next_label = nxt
            self.region_index.set_next_label(rnext)
            if labels:
                with self._rw.write():
                    assert self._hnsw is not None
                    cap = self._hnsw.get_max_elements()
                    grown = grown_capacity(cap, self._hnsw.get_current_count() + len(labels))
                    if grown > cap:
                        self._hnsw.resize_index(grown)
                    self._hnsw.add_items(vecs[keep], np.asarray(labels, dtype=np.int64))
                    self._live += len(labels)
                    self.region_index.add_vectors(rlabels, rvecs)
                self._dirty = True
        return len(labels)

    def get(self, tile_id: str) -> TileRecord:
        """The stored record of ``tile_id`` (NotFoundError if absent)."""
        with self._sql("reading a tile") as con:
            row = con.execute(f"SELECT {db.TILE_COLS} FROM tiles WHERE tile_id = ?", (tile_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"tile {tile_id!r} is not in index {self.path}", "search the index for tile ids")
            return db.tile_from_row(row)

    def vector(self, tile_id: str) -> np.ndarray:
        """The stored float32 vector of ``tile_id`` (as added, not normalised)."""
        with self._sql("reading a vector") as con:
            row = con.execute("SELECT vector FROM tiles WHERE tile_id = ?", (tile_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"tile {tile_id!r} is not in index {self.path}", "search the index for tile ids")
            return db.blob_vector(row[0], self.dim)

    def _records(self, labels: set[int]) -> dict[int, TileRecord]:
        out: dict[int, TileRecord] = {}
        with self._sql("reading tiles") as con:
            for chunk in rdb.chunks(sorted(labels)):
                q = f"SELECT label, {db.TILE_COLS} FROM tiles WHERE label IN ({','.join('?' * len(chunk))})"
                for row in con.execute(q, list(chunk)):
                    out[int(row[0])] = db.tile_from_row(row[1:])
        return out

    def _knn(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """hnswlib knn_query under the read lock (write lock when ef must change for a large k).

        ``k`` is clamped to the live count read under the same lock (a concurrent delete may shrink it).
        """
        ef = max(self._ef, k)
        while True:
            try:
                if ef == self._ef:
                    with self._rw.read():
                        assert self._hnsw is not None
                        kk = min(k, self._live)
                        return self._hnsw.knn_query(q, k=kk) if kk else self._empty(len(q))
                with self._rw.write():
                    assert self._hnsw is not None
                    kk = min(k, self._live)
                    if not kk:
                        return self._empty(len(q))
                    self._hnsw.set_ef(max(ef, kk))
                    try:
                        return self._hnsw.knn_query(q, k=kk)
                    finally:
                        self._hnsw.set_ef(self._ef)
            except RuntimeError as e:  # fewer than k found (many deleted neighbours): widen the beam
                if ef >= self._live:
                    raise IndexCorruptError(f"search in {self.path} found fewer than {k} of {self._live} tiles: {e}",
                                            repair_hint(self.path)) from e
                ef = min(self._live, ef * 4)

    def nearest(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """hnswlib labels and cosine distances of the ``k`` nearest vectors, no records (see :meth:`search`).

        A label deleted by a writer since this store was opened may appear; :meth:`records` omits it.
        """
        q = rdb.check_vectors(vectors, self.dim, None, "query vectors")
        if self._live == 0 or not len(q):
            return self._empty(len(q))
        return self._knn(q, max(1, min(int(k), self._live)))

    def records(self, labels: Sequence[int]) -> dict[int, TileRecord]:
        """label -> TileRecord of the stored ``labels`` (absent ones are left out)."""
        return self._records({int(x) for x in labels})

    @staticmethod
    def _empty(n: int) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((n, 0), np.uint64), np.zeros((n, 0), np.float32)

    def search(self, vectors: np.ndarray, k: int, *,
               filter: Callable[[str], bool] | None = None) -> list[list[tuple[TileRecord, float]]]:
        """The ``k`` most similar tiles to each query vector, best first, as (record, cosine similarity).

        ``filter(tile_id)`` keeps a tile when it returns True. Never more than ``count`` hits.
        """
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise InputError(f"k={k!r} is not a positive integer", "ask for at least one hit")
        if self._closed:
            raise GeoVecError(f"index {self.path} is closed", "open it again")
        q = rdb.check_vectors(vectors, self.dim, None, "query vectors")
        if self._live == 0 or not len(q):
            return [[] for _ in range(len(q))]
        want = min(self._live, int(k) if filter is None else int(k) * 4 + 16)
        while True:
            kk = min(want, self._live)
            labels, dists = self._knn(q, kk)
            recs = self._records({int(x) for x in labels.ravel()})
            out: list[list[tuple[TileRecord, float]]] = []
            short = False
            for row_l, row_d in zip(labels, dists, strict=True):
                hits: list[tuple[TileRecord, float]] = []
                for label, dist in zip(row_l.tolist(), row_d.tolist(), strict=True):
                    rec = recs.get(label)  # None: deleted by a writer since this store was opened
                    if not math.isfinite(dist):  # a damaged vector: never a hit, never a NaN score
                        log.warning("index %s: tile label %d has a non-finite distance (damaged vector); "
                                    "skipped - check with: geovec info --verify --index %s", self.path, label, self.path)
                        continue
                    if rec is not None and (filter is None or filter(rec.tile_id)):
                        hits.append((rec, min(1.0, max(-1.0, 1.0 - dist))))
                        if len(hits) == k:
                            break
                short = short or len(hits) < min(k, self._live)
                out.append(hits)
            if not short or kk >= self._live:
                return out
            want = min(self._live, kk * 4)

    # ---- regions and spatial filters (the region index: :mod:`.store_regions`) ---------------------
    @property
    def regions_spec(self) -> str | None:
        """The region spec this index stores candidates for, or None (no stored regions)."""
        return self.region_index.spec

    @property
    def region_count(self) -> int:
        return self.region_index.count

    def enable_regions(self, spec: str) -> bool:
        """Make this index store regions made with ``spec``; True when newly enabled.

        An index that already has another spec is refused (InputError): the spec is part
        of the index's identity. Tiles indexed before get their regions by a backfill
        (:meth:`tiles_without_regions` + :meth:`add_regions`).
        """
        self._need_writable("enable regions")
        with self._wlock:
            if not self.region_index.must_enable(spec):
                return False
            with self._sql("enabling regions") as con, db.transaction(con):
                self.region_index.record_spec(con, spec)
            self.region_index.start(spec, self.meta)
            self._dirty = True
        log.info("index %s now stores regions (%s)", self.path, spec)
        return True

    def add_regions(self, items: Sequence[tuple[str, Any, Any]]) -> int:
        """Backfill: store ``(tile_id, boxes, vectors)`` for tiles stored without regions, one transaction.

        Tiles whose regions are already stored are skipped (resume-safe). Returns regions added.
        """
        self._need_writable("add regions")
        if self.region_index.half is None:
            raise InputError(f"index {self.path} does not store regions", "enable_regions(spec) first")
        with self._wlock:
            with self._sql("adding regions") as con, db.transaction(con):
                labels, vecs, nxt = self.region_index.insert_for_tiles(con, items)
            self.region_index.set_next_label(nxt)
            with self._rw.write():
                self.region_index.add_vectors(labels, vecs)
            self._dirty = self._dirty or bool(labels)
        return len(labels)

    def tiles_without_regions(self, scene_id: str) -> list[tuple[str, Window]]:
        """(tile_id, window) of the scene's stored tiles that lack their regions (backfill work)."""
        return self.region_index.tiles_without_regions(scene_id)

    def regions_of(self, tile_labels: Sequence[int]) -> tuple[list[RegionRow], np.ndarray]:
        """Every stored region of the tiles (rows and their vectors, for exact scoring)."""
        return self.region_index.of_tiles(tile_labels)

    def search_regions(self, vector: np.ndarray, k: int, *,
                       tile_labels: set[int] | None = None) -> list[tuple[RegionRow, float]]:
        """The ``k`` stored regions nearest ``vector`` (cosine similarity), optionally only of ``tile_labels``."""
        return self.region_index.search(vector, k, tile_labels=tile_labels)

    def tile_labels(self, tile_ids: Sequence[str]) -> dict[str, int]:
        """Label of each stored tile id."""
        with self._sql("reading tile labels") as con:
            return store_regions.tile_labels(con, tile_ids)

    def records_by_label(self, labels: Iterable[int]) -> dict[int, TileRecord]:
        return self._records(set(int(x) for x in labels))

    def tile_vectors(self, labels: Sequence[int]) -> tuple[np.ndarray, list[int]]:
        """Stored tile vectors of ``labels`` (for exact scoring of a filtered set)."""
        with self._sql("reading vectors") as con:
            return rdb.fetch_vectors(con, "tiles", labels, self.dim, self.path)

    def labels_within(self, bounds_wgs84: Box | None, scene_ids: Sequence[str] | None) -> list[tuple[int, str]]:
        """(label, footprint WKT) of the tiles whose WGS84 bounds meet ``bounds_wgs84`` and whose scene is listed.

        Uses the R*Tree when the index has one (any writable open adds it), else scans the footprints.
        """
        with self._sql("filtering tiles") as con:
            return store_regions.labels_within(con, bounds_wgs84, scene_ids)

    # ---- persistence -----------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Save vectors.hnsw and index.json atomically (a no-op when nothing changed)."""
        self._need_writable("checkpoint")
        with self._wlock:
            if not self._dirty:
                return
            tmp = self.path / f"{HNSW}.tmp-{os.getpid()}"
            with self._rw.read():
                assert self._hnsw is not None
                self._hnsw.save_index(str(tmp))
            sha, size = _fsync_sha(tmp)
            meta = dict(self.meta)
            meta.update(count=self._live, max_label=self._next_label - 1, hnsw_sha256=sha, hnsw_bytes=size,
                        hnsw_previous=({"sha256": self._disk[0], "bytes": self._disk[1]} if self._disk else None),
                        updated=now())
            rsaved = self.region_index.save_temp(_fsync_sha)
            if rsaved is not None:
                meta["regions"] = rsaved[1]
            files.write_json_atomic(self.path / SIDECAR, meta)  # vouches for the old and the new files
            os.replace(tmp, self.path / HNSW)
            if rsaved is not None:
                self.region_index.saved(*rsaved)
            files.fsync_dir(self.path)
            self.meta, self._disk, self._dirty = meta, (sha, size), False
            log.debug("checkpointed %s: %d tiles, %d bytes", self.path, self._live, size)

    def close(self) -> None:
        """Checkpoint if writable, release the writer lock and close connections; idempotent."""
        if self._closed:
            return
        try:
            if self.writable:
                self.checkpoint()
        finally:
            self._closed = True
            with self._cons_lock:
                cons, self._cons = self._cons, []
            for con in cons:
                try:
                    con.close()
                except sqlite3.Error:
                    log.debug("closing a connection failed", exc_info=True)
            with self._rw.write():  # wait for searches in flight before dropping the graph
                self._hnsw = None
                self.region_index.half = None
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def __enter__(self) -> IndexStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "closed" if self._closed else ("writable" if self.writable else "read-only")
        return f"IndexStore({str(self.path)!r}, {self._live} tiles, dim {self.dim}, {mode})"
