"""``repair_index``: rebuild vectors.hnsw and index.json from the SQLite source of truth."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import hnswlib

from ..errors import IndexCorruptError, NotFoundError
from . import db, files
from . import regions as rdb
from .files import DB, HNSW, REGIONS_HNSW
from .load import grown_capacity
from .locking import WriterLock
from .opening import DEFAULT_EF_SEARCH, INITIAL_CAPACITY, Opened, now, sql_error
from .store import IndexStore

log = logging.getLogger(__name__)


def repair_index(path: str | Path) -> None:
    """Rebuild vectors.hnsw from the vectors in SQLite and rewrite index.json (needs the writer lock)."""
    p = Path(path).expanduser().resolve()
    if not (p / DB).is_file():
        raise NotFoundError(f"no index database at {str(p / DB)!r}", "repair needs the index's meta.sqlite")
    files.check_db_file(p)
    lock = WriterLock.acquire(p)
    try:
        try:
            con = db.connect(p / DB, readonly=False)
        except sqlite3.DatabaseError as e:
            raise IndexCorruptError(f"{p / DB} is damaged ({e}); --repair rebuilds the vector file from it, "
                                    "so it cannot repair the database itself", files.rebuild_hint(p)) from e
        try:
            info = db.read_info(con)
            required = ("dim", "M", "ef_construction", "preset", "checkpoint", "tiling")
            if any(k not in info for k in required):
                raise IndexCorruptError(f"{p / DB} lacks the model info needed to rebuild the index",
                                        "rebuild the index from the rasters with geovec index")
            dim, M = int(info["dim"]), int(info["M"])
            labels = [r[0] for r in con.execute("SELECT label FROM tiles ORDER BY label")]
            index = hnswlib.Index(space="cosine", dim=dim)
            cap = grown_capacity(INITIAL_CAPACITY, len(labels))
            index.init_index(max_elements=cap, M=M, ef_construction=int(info["ef_construction"]), random_seed=100)
            for chunk in rdb.chunks(labels, 10_000):
                vecs, got = rdb.fetch_vectors(con, "tiles", chunk, dim, p / DB)
                index.add_items(vecs, got)
            rdb.ensure_schema(con)
            region = _rebuild_regions(con, info, dim, M, p)
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError) and ("locked" in str(e) or "busy" in str(e)):
                raise sql_error(e, p, "repairing") from e
            raise IndexCorruptError(f"{p / DB} is damaged ({e}); --repair rebuilds the vector file from it, "
                                    "so it cannot repair the database itself", files.rebuild_hint(p)) from e
        except db.RowError as e:
            raise IndexCorruptError(f"{p / DB}: {e}", files.rebuild_hint(p)) from e
        finally:
            con.close()
        next_label = max(int(info.get("next_label", 0)), labels[-1] + 1 if labels else 0)
        meta = {"format_version": files.FORMAT_VERSION, "dim": dim, "space": "cosine", "M": M,
                "ef_construction": int(info["ef_construction"]),
                "ef_search": int(info.get("ef_search", DEFAULT_EF_SEARCH)), "preset": str(info["preset"]),
                "checkpoint": str(info["checkpoint"]), "tiling": info["tiling"],
                "created": str(info.get("created", now())), "count": len(labels), "max_label": next_label - 1,
                "hnsw_sha256": "0" * 64, "hnsw_bytes": 1, "updated": now()}
        store = IndexStore(p, Opened(meta, index, None, len(labels), next_label, region), writable=True,
                           lock=lock)
    except BaseException:
        lock.release()
        raise
    store.close()  # checkpoint: writes vectors.hnsw and index.json, releases the lock
    log.info("repaired %s: rebuilt %s from %d tiles in %s%s", p, HNSW, len(labels), DB,
             f" and {REGIONS_HNSW} from {region.live} regions" if region is not None else "")


def _rebuild_regions(con: sqlite3.Connection, info: dict, dim: int, M: int, p: Path) -> rdb.RegionHalf | None:
    """A fresh region graph from SQLite's regions table (None when the index stores no regions)."""
    spec = info.get("regions_spec")
    if spec is None:
        return None
    labels = [r[0] for r in con.execute("SELECT label FROM regions ORDER BY label")]
    index = rdb.new_index(dim, M, int(info["ef_construction"]), int(info.get("ef_search", DEFAULT_EF_SEARCH)),
                          grown_capacity(INITIAL_CAPACITY, len(labels)))
    for chunk in rdb.chunks(labels, 10_000):
        vecs, got = rdb.fetch_vectors(con, "regions", chunk, dim, p / DB)
        index.add_items(vecs, got)
    nxt = max(int(info.get("next_region_label", 0)), labels[-1] + 1 if labels else 0)
    return rdb.RegionHalf(str(spec), index, None, len(labels), nxt)
