"""The region vectors of an open store: :class:`RegionIndex`, owned by :class:`~.store.IndexStore`.

See :mod:`.regions` for the layout and the guarantees. The store keeps the writer lock,
the write mutex, the SQLite connections and the ``dirty`` flag; the region index keeps its
hnsw graph and counters and runs the region SQL on the store's connections (methods that
take ``con`` run inside the store's transaction, ``add_vectors`` / ``mark_deleted`` under
the store's write lock).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IndexCorruptError, InputError, NotFoundError
from ..types import Box, Window
from . import regions as rdb
from .files import REGIONS_HNSW, repair_hint
from .load import grown_capacity
from .regions import RegionHalf, RegionRow
from .rwlock import RWLock

log = logging.getLogger(__name__)

#: Tile/region boxes per "region hit" search before widening.
_OVERFETCH = 4

#: ``sql(what)``: the store's connection for this thread, SQLite errors mapped to GeoVecErrors.
SqlScope = Callable[[str], AbstractContextManager[sqlite3.Connection]]


class RegionIndex:
    """The region half of one open store; ``half`` is None while the index stores no regions."""

    def __init__(self, path: Path, dim: int, half: RegionHalf | None, *, rw: RWLock, sql: SqlScope) -> None:
        self.path = path
        self.dim = dim
        self.half = half
        self._rw = rw
        self._sql = sql

    # ---- state ------------------------------------------------------------------------------
    @property
    def spec(self) -> str | None:
        """The region spec this index stores candidates for, or None (no stored regions)."""
        return self.half.spec if self.half is not None else None

    @property
    def count(self) -> int:
        return self.half.live if self.half is not None else 0

    @property
    def next_label(self) -> int:
        return self.half.next_label if self.half is not None else 0

    def _need(self) -> RegionHalf:
        if self.half is None:
            raise InputError(f"index {self.path} does not store regions", "enable_regions(spec) first")
        return self.half

    def must_enable(self, spec: str) -> bool:
        """True when regions are not stored yet; False when stored with ``spec``; InputError for another spec."""
        if self.half is None:
            return True
        if self.half.spec != spec:
            raise InputError(f"index {self.path} stores regions made with {self.half.spec!r}, not {spec!r}",
                             "index with the same --regions spec (or none), or use a new --index")
        return False

    @staticmethod
    def record_spec(con: sqlite3.Connection, spec: str) -> None:
        """Record the region spec in SQLite (inside the caller's transaction)."""
        con.execute("INSERT OR REPLACE INTO info(key, value) VALUES ('regions_spec', ?)", (json.dumps(spec),))

    def start(self, spec: str, meta: dict[str, Any]) -> None:
        """An empty region graph for ``spec``, once SQLite records it."""
        self.half = RegionHalf(spec, rdb.new_index(self.dim, int(meta["M"]), int(meta["ef_construction"]),
                                                   int(meta["ef_search"]), 1024), None, 0, 0)

    # ---- writing ----------------------------------------------------------------------------
    def insert(self, con: sqlite3.Connection, tile_label: int, boxes: Any, vectors: Any, start: int) -> list[int]:
        """Insert one tile's regions (inside the caller's transaction) from label ``start``; their labels."""
        self._need()
        vecs = rdb.check_vectors(vectors, self.dim, None, "region vectors")
        return rdb.insert_regions(con, tile_label, boxes, vecs, start)

    def insert_for_tiles(self, con: sqlite3.Connection,
                         items: Sequence[tuple[str, Any, Any]]) -> tuple[list[int], list[np.ndarray], int]:
        """Backfill rows of ``(tile_id, boxes, vectors)`` (tiles with their regions already stored are skipped).

        Runs inside the caller's transaction; returns the new labels, their vectors and the next label.
        """
        nxt = self._need().next_label
        labels: list[int] = []
        vecs: list[np.ndarray] = []
        for tile_id, boxes, vectors in items:
            row = con.execute("SELECT label FROM tiles WHERE tile_id = ?", (tile_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"tile {tile_id!r} is not in index {self.path}", "add the tile first")
            got = self.insert(con, int(row[0]), boxes, vectors, nxt)
            if got:
                labels.extend(got)
                vecs.append(np.asarray(vectors, dtype=np.float32).reshape(len(got), -1))
                nxt += len(got)
        con.execute("INSERT OR REPLACE INTO info(key, value) VALUES ('next_region_label', ?)", (str(nxt),))
        return labels, vecs, nxt

    def set_next_label(self, nxt: int) -> None:
        """After the transaction that used labels up to ``nxt - 1`` committed."""
        if self.half is not None:
            self.half.next_label = nxt

    def add_vectors(self, labels: list[int], vectors: list[np.ndarray]) -> None:
        """hnswlib side of committed regions (caller holds the write lock)."""
        if not labels or self.half is None:
            return
        idx = self.half.index
        cap = idx.get_max_elements()
        grown = grown_capacity(cap, idx.get_current_count() + len(labels))
        if grown > cap:
            idx.resize_index(grown)
        idx.add_items(np.concatenate(vectors).astype(np.float32), np.asarray(labels, dtype=np.int64))
        self.half.live += len(labels)

    @staticmethod
    def delete_rows(con: sqlite3.Connection, tile_labels: list[int]) -> list[int]:
        """Delete the rows of ``tile_labels``' regions and R*Tree entries (inside a transaction)."""
        if not rdb.has_tables(con):
            return []
        gone: list[int] = []
        for chunk in rdb.chunks(tile_labels):
            marks = ",".join("?" * len(chunk))
            gone += [r[0] for r in con.execute(f"SELECT label FROM regions WHERE tile_label IN ({marks})", list(chunk))]
            con.execute(f"DELETE FROM regions WHERE tile_label IN ({marks})", list(chunk))
            con.execute(f"DELETE FROM region_tiles WHERE tile_label IN ({marks})", list(chunk))
            con.execute(f"DELETE FROM tiles_rtree WHERE label IN ({marks})", list(chunk))
        return gone

    def mark_deleted(self, labels: list[int]) -> None:
        """hnswlib side of deleted regions (caller holds the write lock)."""
        if self.half is None:
            return
        for label in labels:
            try:
                self.half.index.mark_deleted(label)
            except RuntimeError:
                log.debug("region label %d was not live in hnsw", label)
        self.half.live -= len(labels)

    # ---- checkpoint -------------------------------------------------------------------------
    def save_temp(self, fsync_sha: Callable[[Path], tuple[str, int]]) -> tuple[Path, dict[str, Any]] | None:
        """Write the graph to a temp file (under the read lock); its path and the sidecar's ``regions`` entry."""
        r = self.half
        if r is None:
            return None
        tmp = self.path / f"{REGIONS_HNSW}.tmp-{os.getpid()}"
        with self._rw.read():
            r.index.save_index(str(tmp))
        sha, size = fsync_sha(tmp)
        return tmp, {"spec": r.spec, "count": r.live, "max_label": r.next_label - 1, "hnsw_sha256": sha,
                     "hnsw_bytes": size, "hnsw_previous": {"sha256": r.disk[0], "bytes": r.disk[1]} if r.disk else None}

    def saved(self, tmp: Path, entry: dict[str, Any]) -> None:
        """Rename the temp file of :meth:`save_temp` in, once the sidecar vouches for it."""
        os.replace(tmp, self.path / REGIONS_HNSW)
        if self.half is not None:
            self.half.disk = (entry["hnsw_sha256"], entry["hnsw_bytes"])

    # ---- reading ----------------------------------------------------------------------------
    def tiles_without_regions(self, scene_id: str) -> list[tuple[str, Window]]:
        """(tile_id, window) of the scene's stored tiles that lack their regions (backfill work)."""
        if self.half is None:
            return []
        with self._sql("listing tiles without regions") as con:
            rows = con.execute('SELECT tile_id, "window" FROM tiles t WHERE scene_id = ? AND NOT EXISTS '
                               "(SELECT 1 FROM region_tiles r WHERE r.tile_label = t.label) ORDER BY label",
                               (scene_id,)).fetchall()
        return [(r[0], rdb.window_of(r[1])) for r in rows]

    def of_tiles(self, tile_labels: Sequence[int]) -> tuple[list[RegionRow], np.ndarray]:
        """Every stored region of the tiles (rows and their vectors, for exact scoring)."""
        if self.half is None:
            return [], np.zeros((0, self.dim), np.float32)
        with self._sql("reading regions") as con:
            return rdb.regions_of_tiles(con, tile_labels, self.dim)

    def search(self, vector: np.ndarray, k: int, *,
               tile_labels: set[int] | None = None) -> list[tuple[RegionRow, float]]:
        """The ``k`` stored regions nearest ``vector`` (cosine similarity), optionally only of ``tile_labels``."""
        if self.half is None or self.half.live == 0:
            return []
        q = rdb.check_vectors(vector, self.dim, 1, "query vector")
        live = self.half.live
        want = min(live, k if tile_labels is None else k * _OVERFETCH + 16)
        while True:
            with self._rw.read():
                r = self.half
                if r is None:
                    return []
                kk = min(want, r.live)
                try:
                    labels, dists = r.index.knn_query(q, k=kk)
                except RuntimeError as e:
                    if kk >= r.live:
                        raise IndexCorruptError(f"region search in {self.path} failed: {e}",
                                                repair_hint(self.path)) from e
                    want = min(r.live, kk * 4)
                    continue
            with self._sql("reading regions") as con:
                rows = rdb.region_rows(con, labels[0].tolist())
            out: list[tuple[RegionRow, float]] = []
            for label, dist in zip(labels[0].tolist(), dists[0].tolist(), strict=True):
                row = rows.get(int(label))
                if row is None or (tile_labels is not None and row.tile_label not in tile_labels):
                    continue
                out.append((row, min(1.0, max(-1.0, 1.0 - dist))))
                if len(out) == k:
                    return out
            if kk >= live:
                return out
            want = min(live, kk * 4)


def tile_labels(con: sqlite3.Connection, tile_ids: Sequence[str]) -> dict[str, int]:
    """Label of each stored tile id."""
    out: dict[str, int] = {}
    for chunk in rdb.chunks(list(tile_ids)):
        q = f"SELECT tile_id, label FROM tiles WHERE tile_id IN ({','.join('?' * len(chunk))})"
        out.update({r[0]: int(r[1]) for r in con.execute(q, list(chunk))})
    return out


def labels_within(con: sqlite3.Connection, bounds_wgs84: Box | None,
                  scene_ids: Iterable[str] | None) -> list[tuple[int, str]]:
    """(label, footprint WKT) of the tiles whose WGS84 bounds meet ``bounds_wgs84`` and whose scene is listed.

    Uses the R*Tree when the index has one (any writable open adds it), else scans the footprints.
    """
    where: list[str] = []
    params: list[Any] = []
    if scene_ids is not None:
        ids = list(scene_ids)
        where.append(f"t.scene_id IN ({','.join('?' * len(ids))})")
        params += ids
    rtree = rdb.has_tables(con)
    if bounds_wgs84 is not None and rtree:
        x0, y0, x1, y1 = bounds_wgs84
        sql = ("SELECT t.label, t.footprint_wgs84 FROM tiles_rtree r JOIN tiles t ON t.label = r.label "
               "WHERE r.maxx >= ? AND r.minx <= ? AND r.maxy >= ? AND r.miny <= ?")
        rows = con.execute(sql + "".join(f" AND {w}" for w in where), [x0, x1, y0, y1, *params]).fetchall()
    else:
        sql = "SELECT t.label, t.footprint_wgs84 FROM tiles t" + (f" WHERE {' AND '.join(where)}" if where else "")
        rows = con.execute(sql, params).fetchall()
    if bounds_wgs84 is not None and not rtree:
        rows = [r for r in rows if _meets(rdb.rtree_bounds(r[1]), bounds_wgs84)]
    return [(int(r[0]), r[1]) for r in rows]


def _meets(rt: tuple[float, float, float, float], b: Box) -> bool:
    minx, maxx, miny, maxy = rt
    return maxx >= b[0] and minx <= b[2] and maxy >= b[1] and miny <= b[3]
