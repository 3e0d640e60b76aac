"""Opening an index directory: create its files, validate them, load the graphs and heal them against SQLite.

See :mod:`.store` for the layout and the crash-safety rules. Nothing here keeps an
open store: :func:`create_files` and :func:`load` return what
:class:`~.store.IndexStore` is built from (:class:`Opened`).

* Opening validates the sidecar, the vector file's size, SHA-256, header and graph
  **before** hnswlib loads it (nmslib/hnswlib#673; :mod:`.load`), then heals the
  loaded graph against SQLite: labels SQLite has but the file lacks (a crash after a
  commit, before a checkpoint) are re-added from SQLite, labels SQLite no longer has
  are marked deleted. Read-only stores heal in memory only.
* A create writes the SQLite file first and the sidecar last (by the first
  checkpoint): the index exists once it is complete; the files of a create that
  crashed before its sidecar are removed by the next create.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hnswlib

from ..errors import BusyError, GeoVecError, IndexCorruptError, InputError, NotFoundError
from . import db, files
from . import regions as rdb
from .files import DB, HNSW, REGIONS_HNSW, SIDECAR, repair_hint
from .load import Loaded, load_hnsw
from .locking import WriterLock
from .regions import RegionHalf

log = logging.getLogger(__name__)

INITIAL_CAPACITY = 1024
DEFAULT_EF_SEARCH = 64


@dataclass
class Opened:
    """The state an :class:`~.store.IndexStore` is built from: validated, loaded and healed."""

    meta: dict[str, Any]
    index: hnswlib.Index
    disk: tuple[str, int] | None  # (sha256, bytes) of the vector file loaded; None: nothing on disk yet
    live: int
    next_label: int
    regions: RegionHalf | None = None
    dirty: bool = False  # healed in memory: the next checkpoint must save it


def now() -> str:
    """The current UTC time as the index records it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def sql_error(e: sqlite3.Error, path: Path, what: str) -> GeoVecError:
    """Map a SQLite failure to a GeoVecError (locked -> BusyError, malformed -> IndexCorruptError)."""
    msg = str(e)
    if "locked" in msg or "busy" in msg:
        return BusyError(f"{what} on index {path} timed out: {msg}", "another process holds the database; retry")
    if isinstance(e, sqlite3.DatabaseError) and not isinstance(e, sqlite3.OperationalError | sqlite3.IntegrityError):
        return IndexCorruptError(f"{path / DB} is unreadable ({what}): {msg}",
                                 "restore the index from a backup or rebuild it with geovec index")
    return GeoVecError(f"{what} on index {path} failed: {msg}", "see the log for details")


# ---- creating -------------------------------------------------------------------------------
def check_create_args(path: str | Path, *, dim: int, M: int, ef_construction: int, tiling: Any) -> Path:
    """Validate a create's arguments before anything is touched; the resolved index path."""
    for name, value, lo, hi in (("dim", dim, 1, 1 << 16), ("M", M, 2, 2048),
                                ("ef_construction", ef_construction, 1, 1 << 16)):
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise InputError(f"{name}={value!r} is not an integer in {lo}..{hi}", f"pass a valid {name}")
    if not isinstance(tiling, dict):
        raise InputError(f"tiling={tiling!r} is not a dict", "pass TilingParams.to_dict()")
    p = Path(path).expanduser().resolve()
    if p.exists() and not p.is_dir():
        raise InputError(f"index path {str(path)!r} is a file, not a folder", "choose a new index directory")
    return p


def create_files(p: Path, *, dim: int, preset: str, checkpoint: str, tiling: dict[str, Any], M: int,
                 ef_construction: int, model: dict[str, Any] | None) -> Opened:
    """Write the SQLite file of a new index at ``p`` (the caller holds the writer lock); an empty graph.

    The sidecar is not written here: the store's first checkpoint writes it, last.
    """
    if (p / SIDECAR).exists():
        raise InputError(f"an index already exists at {str(p)!r}",
                         "open it (IndexStore.open / open_or_create) or choose a new directory")
    clear_leftovers(p)
    created = now()
    info = {"format_version": files.FORMAT_VERSION, "dim": dim, "space": "cosine", "M": M,
            "ef_construction": ef_construction, "ef_search": DEFAULT_EF_SEARCH, "preset": str(preset),
            "checkpoint": str(checkpoint), "tiling": tiling, "created": created, "next_label": 0}
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
    meta.update(count=0, max_label=-1, hnsw_sha256="0" * 64, hnsw_bytes=1, updated=created)
    return Opened(meta, index, None, 0, 0, None, dirty=True)


def clear_leftovers(p: Path) -> None:
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


# ---- opening --------------------------------------------------------------------------------
def check_index_dir(path: str | Path, *, writable: bool) -> Path:
    """The resolved index directory, or the error that says why it cannot be opened (before any lock)."""
    p = Path(path).expanduser().resolve()
    if p.is_dir() and not (p / SIDECAR).exists() and not writable:
        holder = WriterLock.holder(p)
        if holder is not None:  # a create in progress: the sidecar is written last
            raise BusyError(f"index {p} is being built (by pid {holder}) and cannot be opened yet",
                            "retry in a moment: it opens once its first checkpoint is written")
    if not p.is_dir() or not ((p / SIDECAR).exists() or (p / DB).exists()):
        raise NotFoundError(f"no index at {str(p)!r} (missing {SIDECAR})",
                            "build one with: geovec index FOLDER --index DIR --model MODEL")
    if not (p / SIDECAR).exists():
        raise IndexCorruptError(f"index {p} lacks its sidecar {SIDECAR}", repair_hint(p))
    return p


def remove_checkpoint_leftovers(p: Path) -> None:
    """Delete the temp files of a checkpoint that crashed (the writer lock is held)."""
    for pattern in (f"{HNSW}.tmp-*", f"{REGIONS_HNSW}.tmp-*", f"{SIDECAR}.tmp-*"):
        for leftover in p.glob(pattern):
            leftover.unlink(missing_ok=True)


def load(p: Path, *, writable: bool) -> Opened:
    """Validate and load the index at ``p`` and heal its graphs against SQLite (the lock, if any, is held)."""
    meta = files.read_sidecar(p)
    files.check_db_file(p)
    try:
        con = db.connect(p / DB, readonly=True)
    except sqlite3.Error as e:
        raise sql_error(e, p, "opening") from e
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
        quiet = not writable and (WriterLock.holder(p) is not None or _checkpointed_since(p, meta)
                                  or (was_previous and renamed_in(p, meta)))
        why = "not checkpointed yet by the running writer" if quiet else "interrupted run"
        where = "" if writable else "; in memory only (read-only)"
        level = logging.DEBUG if quiet else logging.WARNING
        if missing:
            log.log(level, "index %s: re-added %d tile(s) SQLite holds but %s lacked (%s)%s", p, missing, HNSW,
                    why, where)
        region = _load_regions(con, info, meta, rloaded, p)
        if region is not None and region[1]:
            log.log(level, "index %s: re-added %d region(s) SQLite holds but %s lacked (%s)%s", p, region[1],
                    REGIONS_HNSW, why, where)
        con.execute("COMMIT")
    except sqlite3.Error as e:
        raise sql_error(e, p, "opening") from e
    except db.RowError as e:
        raise IndexCorruptError(f"{p / DB}: {e}", files.rebuild_hint(p)) from e
    finally:
        con.close()
    next_label = max(int(info.get("next_label", 0)), int(labels_max) + 1 if labels_max is not None else 0,
                     int(meta["max_label"]) + 1)
    dirty = writable and bool(missing or was_previous or newly_deleted or (region and region[2]))
    return Opened(meta, index, disk, live, next_label, region[0] if region is not None else None, dirty)


def _load_regions(con: sqlite3.Connection, info: dict[str, Any], meta: dict[str, Any],
                  rloaded: Loaded | None, p: Path) -> tuple[RegionHalf, int, bool] | None:
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
    disk: tuple[str, int] | None
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
    return RegionHalf(str(spec), index, disk, live, nxt), missing, bool(missing or deleted or was_previous)


def renamed_in(p: Path, meta: dict[str, Any], wait_s: float = 0.5) -> bool:
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


def _checkpointed_since(p: Path, meta: dict[str, Any]) -> bool:
    """Whether a writer checkpointed after ``meta`` was read (it has finished meanwhile)."""
    try:
        return files.read_sidecar(p).get("hnsw_sha256") != meta.get("hnsw_sha256")
    except IndexCorruptError:
        return False
