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
* Opening validates the sidecar, the vector file's size, SHA-256, header and
  graph **before** hnswlib loads it (nmslib/hnswlib#673), then heals the loaded
  graph against SQLite: labels SQLite has but the file lacks (a crash after a
  commit, before a checkpoint) are re-added from SQLite, labels SQLite no longer
  has are marked deleted. Read-only stores heal in memory only.
* One writer per directory across processes (``writer.lock``, fcntl); within a
  process an :class:`RWLock` guards every hnswlib call.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np

from ..errors import GeoVecError, IndexCorruptError, InputError, ModelMismatchError, NotFoundError
from ..types import Scene, Stretch, TileRecord
from . import db, files
from . import regions as rdb
from .files import DB, HNSW, LOCK, REGIONS_HNSW, SIDECAR, repair_hint
from .load import grown_capacity, load_hnsw
from .locking import WriterLock
from .rwlock import RWLock
from .store_regions import RegionsMixin

log = logging.getLogger(__name__)

INITIAL_CAPACITY = 1024
DEFAULT_EF_SEARCH = 64
_IN_CHUNK = 900  # labels per "IN (...)" query (below SQLite's variable limit)

__all__ = ["IndexStore", "SIDECAR", "HNSW", "DB", "LOCK"]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _chunks(xs: Sequence[int], n: int = _IN_CHUNK) -> Iterator[Sequence[int]]:
    for i in range(0, len(xs), n):
        yield xs[i : i + n]


def _not_an_index(path: Path) -> NotFoundError:
    return NotFoundError(f"no index at {str(path)!r} (missing {SIDECAR})",
                         "build one with: geovec index FOLDER --index DIR --model MODEL")


def _sql_error(e: sqlite3.Error, path: Path, what: str) -> GeoVecError:
    """Map a SQLite failure to a GeoVecError (locked -> BusyError, malformed -> IndexCorruptError)."""
    from ..errors import BusyError

    msg = str(e)
    if "locked" in msg or "busy" in msg:
        return BusyError(f"{what} on index {path} timed out: {msg}", "another process holds the database; retry")
    if isinstance(e, sqlite3.DatabaseError) and not isinstance(e, sqlite3.OperationalError | sqlite3.IntegrityError):
        return IndexCorruptError(f"{path / DB} is unreadable ({what}): {msg}",
                                 "restore the index from a backup or rebuild it with geovec index")
    return GeoVecError(f"{what} on index {path} failed: {msg}", "see the log for details")


def _fsync_sha(path: Path) -> tuple[str, int]:
    """fsync a written file; its SHA-256 and size."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        return files.sha256_fd(fd), os.fstat(fd).st_size
    finally:
        os.close(fd)


class IndexStore(RegionsMixin):
    """One index directory, opened read-only or as its single writer. See the module docstring.

    Region vectors (when the index stores them) follow the same rules; see :mod:`.regions`.
    """

    def __init__(self, path: Path, meta: dict[str, Any], index: hnswlib.Index, *, writable: bool,
                 lock: WriterLock | None, disk: tuple[str, int] | None, live: int, next_label: int) -> None:
        self.path = path
        self.meta = meta
        self.dim = int(meta["dim"])
        self.writable = writable
        self._hnsw: hnswlib.Index | None = index
        self._lock = lock
        self._disk = disk
        self._live = live
        self._next_label = next_label
        self._ef = int(meta["ef_search"])
        self._rw = RWLock()
        self._wlock = threading.RLock()
        self._local = threading.local()
        self._cons: list[sqlite3.Connection] = []
        self._cons_lock = threading.Lock()
        self._dirty = disk is None
        self._closed = False
        self._r: rdb.RegionHalf | None = None
        index.set_ef(self._ef)

    # ---- opening ---------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, *, dim: int, preset: str, checkpoint: str, tiling: dict[str, Any],
               M: int = 16, ef_construction: int = 200, model: dict[str, Any] | None = None) -> IndexStore:
        """Create an empty index at ``path`` (a new or empty folder) and hold its writer lock.

        ``model`` is the embedder's identity (``Embedder.identity``), recorded so that
        searching or re-indexing with another model is refused (:mod:`..binding`).
        """
        for name, value, lo, hi in (("dim", dim, 1, 1 << 16), ("M", M, 2, 2048),
                                    ("ef_construction", ef_construction, 1, 1 << 16)):
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                raise InputError(f"{name}={value!r} is not an integer in {lo}..{hi}", f"pass a valid {name}")
        if not isinstance(tiling, dict):
            raise InputError(f"tiling={tiling!r} is not a dict", "pass TilingParams.to_dict()")
        p = Path(path).expanduser().resolve()
        if p.exists() and not p.is_dir():
            raise InputError(f"index path {str(path)!r} is a file, not a folder", "choose a new index directory")
        p.mkdir(parents=True, exist_ok=True)
        lock = WriterLock.acquire(p)
        try:
            if (p / SIDECAR).exists():
                raise InputError(f"an index already exists at {str(path)!r}",
                                 "open it (IndexStore.open / open_or_create) or choose a new directory")
            cls._clear_leftovers(p)
            now = _now()
            info = {"format_version": files.FORMAT_VERSION, "dim": dim, "space": "cosine", "M": M,
                    "ef_construction": ef_construction, "ef_search": DEFAULT_EF_SEARCH, "preset": str(preset),
                    "checkpoint": str(checkpoint), "tiling": tiling, "created": now, "next_label": 0}
            if model:
                info["model"] = dict(model)
            con = db.connect(p / DB, readonly=False)
            try:
                db.init_schema(con, info)
                rdb.ensure_schema(con)
            finally:
                con.close()
            index = hnswlib.Index(space="cosine", dim=dim)
            index.init_index(max_elements=INITIAL_CAPACITY, M=M, ef_construction=ef_construction, random_seed=100)
            meta = {k: v for k, v in info.items() if k != "next_label"}
            meta.update(count=0, max_label=-1, hnsw_sha256="0" * 64, hnsw_bytes=1, updated=now)
            store = cls(p, meta, index, writable=True, lock=lock, disk=None, live=0, next_label=0)
            store.checkpoint()  # the sidecar is written last: the index exists once it is complete
        except BaseException:
            lock.release()
            raise
        log.info("created index %s (dim %d, M %d, ef_construction %d)", p, dim, M, ef_construction)
        return store

    @staticmethod
    def _clear_leftovers(p: Path) -> None:
        """Remove the files of a create that crashed before its sidecar (refused if tiles exist)."""
        if (p / DB).exists():
            try:
                con = sqlite3.connect(f"{(p / DB).as_uri()}?mode=ro", uri=True)
                try:
                    n = con.execute("SELECT COUNT(*) FROM tiles").fetchone()[0]
                finally:
                    con.close()
            except sqlite3.Error:
                n = 0
            if n:
                raise IndexCorruptError(f"{p} has no {SIDECAR} but its {DB} holds {n} tiles", repair_hint(p))
        for name in (DB, DB + "-wal", DB + "-shm", HNSW, REGIONS_HNSW):
            (p / name).unlink(missing_ok=True)

    @classmethod
    def open(cls, path: str | Path, *, writable: bool = False) -> IndexStore:
        """Open an existing index; validates every file before hnswlib loads the vectors.

        Raises:
            NotFoundError: ``path`` is not an index directory.
            IndexCorruptError: a file is missing, truncated, tampered with or inconsistent.
            BusyError: ``writable`` and another writer holds the index.
        """
        p = Path(path).expanduser().resolve()
        if p.is_dir() and not (p / SIDECAR).exists() and not writable:
            holder = WriterLock.holder(p)
            if holder is not None:  # a create in progress: the sidecar is written last
                from ..errors import BusyError

                raise BusyError(f"index {p} is being built (by pid {holder}) and cannot be opened yet",
                                "retry in a moment: it opens once its first checkpoint is written")
        if not p.is_dir() or not ((p / SIDECAR).exists() or (p / DB).exists()):
            raise _not_an_index(p)
        if not (p / SIDECAR).exists():
            raise IndexCorruptError(f"index {p} lacks its sidecar {SIDECAR}", repair_hint(p))
        lock = WriterLock.acquire(p) if writable else None
        try:
            if lock is not None:
                for pattern in (f"{HNSW}.tmp-*", f"{REGIONS_HNSW}.tmp-*", f"{SIDECAR}.tmp-*"):  # a checkpoint's
                    for leftover in p.glob(pattern):
                        leftover.unlink(missing_ok=True)
            store = cls._open_locked(p, writable=writable, lock=lock)
            if writable:
                with store._sql("adding the region tables") as con:
                    rdb.ensure_schema(con)
            return store
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    @classmethod
    def _open_locked(cls, p: Path, *, writable: bool, lock: WriterLock | None) -> IndexStore:
        meta = files.read_sidecar(p)
        files.check_db_file(p)
        try:
            con = db.connect(p / DB, readonly=True)
        except sqlite3.Error as e:
            raise _sql_error(e, p, "opening") from e
        try:
            info = db.read_info(con)
            for key in ("dim", "M", "preset", "checkpoint"):
                if info.get(key) != meta[key]:
                    raise IndexCorruptError(f"index {p}: {SIDECAR} says {key}={meta[key]!r} but {DB} says "
                                            f"{info.get(key)!r}", repair_hint(p))
            # The file first, then one SQLite snapshot: labels are never reused, so anything the file
            # lacks was added later (re-add it) and anything SQLite lacks was deleted (mark it).
            meta, index, disk, was_previous, rloaded = load_hnsw(p)
            con.execute("BEGIN")
            live, missing, newly_deleted = rdb.heal(index, con, "tiles", meta["dim"], p)
            labels_max = con.execute("SELECT MAX(label) FROM tiles").fetchone()[0]
            # Read-only beside a live writer, rows missing from the file are simply not checkpointed yet.
            quiet = not writable and (WriterLock.holder(p) is not None or cls._checkpointed_since(p, meta)
                                      or (was_previous and cls._renamed_in(p, meta)))
            why = "not checkpointed yet by the running writer" if quiet else "interrupted run"
            where = "" if writable else "; in memory only (read-only)"
            level = logging.DEBUG if quiet else logging.WARNING
            if missing:
                log.log(level, "index %s: re-added %d tile(s) SQLite holds but %s lacked (%s)%s", p, missing, HNSW,
                        why, where)
            region = cls._open_regions(con, info, meta, rloaded, p)
            if region is not None and region[1]:
                log.log(level, "index %s: re-added %d region(s) SQLite holds but %s lacked (%s)%s", p, region[1],
                        REGIONS_HNSW, why, where)
            con.execute("COMMIT")
        except sqlite3.Error as e:
            raise _sql_error(e, p, "opening") from e
        except db.RowError as e:
            raise IndexCorruptError(f"{p / DB}: {e}", files.rebuild_hint(p)) from e
        finally:
            con.close()
        next_label = max(int(info.get("next_label", 0)), int(labels_max) + 1 if labels_max is not None else 0,
                         int(meta["max_label"]) + 1)
        store = cls(p, meta, index, writable=writable, lock=lock, disk=disk, live=live,
                    next_label=next_label)
        store._r = region[0] if region is not None else None
        store._dirty = writable and bool(missing or was_previous or newly_deleted or (region and region[2]))
        return store

    @staticmethod
    def _open_regions(con: sqlite3.Connection, info: dict[str, Any], meta: dict[str, Any],
                      rloaded: Any, p: Path) -> tuple[rdb.RegionHalf, int, bool] | None:
        """The region half (healed against SQLite), the regions re-added, and whether it must be saved."""
        spec = info.get("regions_spec")
        side = meta.get("regions")
        if spec is None:
            if side:
                raise IndexCorruptError(f"index {p}: {SIDECAR} lists regions but {DB} has no region spec",
                                        repair_hint(p))
            return None
        if side and side.get("spec") != spec:
            raise IndexCorruptError(f"index {p}: {SIDECAR} says regions.spec={side.get('spec')!r} but {DB} says "
                                    f"{spec!r}", repair_hint(p))
        if rloaded is None:  # enabled, but not checkpointed yet: rebuilt from SQLite
            index = rdb.new_index(int(meta["dim"]), int(meta["M"]), int(meta["ef_construction"]),
                                  int(meta["ef_search"]), 1024)
            disk, was_previous = None, True
        else:
            index, disk, was_previous = rloaded
            index.set_ef(int(meta["ef_search"]))
        live, missing, deleted = rdb.heal(index, con, "regions", int(meta["dim"]), p)
        mx = con.execute("SELECT MAX(label) FROM regions").fetchone()[0]
        nxt = max(int(info.get("next_region_label", 0)), int(mx) + 1 if mx is not None else 0,
                  int((side or {}).get("max_label", -1)) + 1)
        return rdb.RegionHalf(str(spec), index, disk, live, nxt), missing, bool(missing or deleted or was_previous)

    @staticmethod
    def _renamed_in(p: Path, meta: dict[str, Any], wait_s: float = 0.5) -> bool:
        """Whether the vector file the sidecar names replaced the previous one we loaded.

        A checkpoint writes the sidecar, then renames its new file in: a reader that opened
        the previous file just before (the writer's last checkpoint, so no holder is left)
        saw a live checkpoint, not an interrupted one. After a crash the rename never comes.
        """
        deadline = time.monotonic() + wait_s
        while True:
            try:
                if (p / HNSW).stat().st_size == int(meta.get("hnsw_bytes", -1)):
                    return True
            except OSError:
                pass
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    @staticmethod
    def _checkpointed_since(p: Path, meta: dict[str, Any]) -> bool:
        """Whether a writer checkpointed after ``meta`` was read (it has finished meanwhile)."""
        try:
            return files.read_sidecar(p).get("hnsw_sha256") != meta.get("hnsw_sha256")
        except IndexCorruptError:
            return False

    @staticmethod
    def _fetch_vectors(con: sqlite3.Connection, labels: Sequence[int], dim: int,
                       p: Path) -> tuple[np.ndarray, list[int]]:
        return rdb.fetch_vectors(con, "tiles", labels, dim, p / DB)

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
                raise _sql_error(e, self.path, "connecting") from e
            with self._cons_lock:
                self._cons.append(con)
            self._local.con = con
        return con

    @contextmanager
    def _sql(self, what: str) -> Iterator[sqlite3.Connection]:
        try:
            yield self._con()
        except sqlite3.Error as e:
            raise _sql_error(e, self.path, what) from e
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
                        db.scene_params(scene, stretch, "partial", _now()))
            con.execute("DELETE FROM scene_paths WHERE scene_id = ?", (scene.scene_id,))
            con.executemany("INSERT OR IGNORE INTO scene_paths(path, scene_id) VALUES (?, ?)",
                            [(q, scene.scene_id) for q in sorted(paths)])

    def complete_scene(self, scene_id: str) -> None:
        """Mark a stored scene 'complete' (NotFoundError if it is not stored)."""
        self._need_writable("complete a scene")
        with self._wlock, self._sql("completing a scene") as con, db.transaction(con):
            n = con.execute("UPDATE scenes SET status = 'complete', updated = ? WHERE scene_id = ?",
                            (_now(), scene_id)).rowcount
        if n == 0:
            raise NotFoundError(f"scene {scene_id!r} is not in index {self.path}", "upsert_scene() it first")

    def delete_scene(self, scene_id: str) -> int:
        """Delete a scene and its tiles (marked deleted in hnswlib); returns the tiles deleted."""
        self._need_writable("delete a scene")
        with self._wlock:
            with self._sql("deleting a scene") as con, db.transaction(con):
                labels = [r[0] for r in con.execute("SELECT label FROM tiles WHERE scene_id = ?", (scene_id,))]
                region_labels = self._delete_regions(con, labels)
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
                self._mark_regions_deleted(region_labels)
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
    def _check_vectors(self, vectors: Any, n: int | None, what: str) -> np.ndarray:
        arr = np.asarray(vectors, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[1] != self.dim or (n is not None and arr.shape[0] != n):
            want = f"({n}, {self.dim})" if n is not None else f"(n, {self.dim})"
            raise InputError(f"{what} have shape {tuple(np.shape(vectors))}, expected {want}",
                             f"give float32 vectors of the index's dimension {self.dim}")
        if not np.isfinite(arr).all():
            raise InputError(f"{what} contain NaN or infinite values", "check the model output")
        if arr.shape[0] and not (np.linalg.norm(arr, axis=1) > 0).all():
            raise InputError(f"{what} contain an all-zero vector (no cosine direction)", "check the model output")
        return arr

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
        vecs = self._check_vectors(vectors, len(records), "vectors")
        if not len(records):
            return 0
        with self._wlock:
            keep: list[int] = []
            labels: list[int] = []
            nxt = self._next_label
            rnext = self._r.next_label if self._r is not None else 0
            rlabels: list[int] = []
            rvecs: list[np.ndarray] = []
            with self._sql("adding tiles") as con, db.transaction(con):
                for i, rec in enumerate(records):
                    if con.execute(db.INSERT_TILE, db.tile_params(rec, nxt, vecs[i])).rowcount == 1:
                        con.execute("INSERT OR REPLACE INTO tiles_rtree VALUES (?, ?, ?, ?, ?)",
                                    (nxt, *rdb.rtree_bounds(rec.footprint_wgs84)))
                        if regions is not None:
                            got = self._region_labels(con, nxt, regions[i][0], regions[i][1], rnext)
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
            if self._r is not None:
                self._r.next_label = rnext
            if labels:
                with self._rw.write():
                    assert self._hnsw is not None
                    cap = self._hnsw.get_max_elements()
                    grown = grown_capacity(cap, self._hnsw.get_current_count() + len(labels))
                    if grown > cap:
                        self._hnsw.resize_index(grown)
                    self._hnsw.add_items(vecs[keep], np.asarray(labels, dtype=np.int64))
                    self._live += len(labels)
                    self._add_region_vectors(rlabels, rvecs)
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
            for chunk in _chunks(sorted(labels)):
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
        q = self._check_vectors(vectors, None, "query vectors")
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
        q = self._check_vectors(vectors, None, "query vectors")
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
                        updated=_now())
            rtmp = None
            if self._r is not None:
                r = self._r
                rtmp = self.path / f"{REGIONS_HNSW}.tmp-{os.getpid()}"
                with self._rw.read():
                    r.index.save_index(str(rtmp))
                rsha, rsize = _fsync_sha(rtmp)
                meta["regions"] = {"spec": r.spec, "count": r.live, "max_label": r.next_label - 1,
                                   "hnsw_sha256": rsha, "hnsw_bytes": rsize,
                                   "hnsw_previous": {"sha256": r.disk[0], "bytes": r.disk[1]} if r.disk else None}
            files.write_json_atomic(self.path / SIDECAR, meta)  # vouches for the old and the new files
            os.replace(tmp, self.path / HNSW)
            if rtmp is not None and self._r is not None:
                os.replace(rtmp, self.path / REGIONS_HNSW)
                self._r.disk = (meta["regions"]["hnsw_sha256"], meta["regions"]["hnsw_bytes"])
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
                self._r = None
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
