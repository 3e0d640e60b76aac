"""IndexStore methods for region vectors and spatial filters (mixed into :class:`~.store.IndexStore`).

See :mod:`.regions` for the layout and the guarantees.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import IndexCorruptError, InputError, NotFoundError
from ..types import Box, TileRecord, Window
from . import db
from . import regions as rdb
from .files import repair_hint

if TYPE_CHECKING:
    from .regions import RegionHalf, RegionRow

log = logging.getLogger(__name__)

#: Tile/region boxes per "region hit" search before widening.
_OVERFETCH = 4


class RegionsMixin:
    """Region half of the store; relies on the store's locks, SQL helpers and vector checks."""

    _r: RegionHalf | None

    # ---- state ------------------------------------------------------------------------------
    @property
    def regions_spec(self) -> str | None:
        """The region spec this index stores candidates for, or None (no stored regions)."""
        return self._r.spec if self._r is not None else None

    @property
    def region_count(self) -> int:
        return self._r.live if self._r is not None else 0

    def enable_regions(self, spec: str) -> bool:
        """Make this index store regions made with ``spec``; True when newly enabled.

        An index that already has another spec is refused (InputError): the spec is part
        of the index's identity. Tiles indexed before get their regions by a backfill
        (:meth:`tiles_without_regions` + :meth:`add_regions`).
        """
        self._need_writable("enable regions")  # type: ignore[attr-defined]
        with self._wlock:  # type: ignore[attr-defined]
            if self._r is not None:
                if self._r.spec != spec:
                    raise InputError(f"index {self.path} stores regions made with {self._r.spec!r}, not {spec!r}",  # type: ignore[attr-defined]
                                     "index with the same --regions spec (or none), or use a new --index")
                return False
            with self._sql("enabling regions") as con, db.transaction(con):  # type: ignore[attr-defined]
                con.execute("INSERT OR REPLACE INTO info(key, value) VALUES ('regions_spec', ?)", (json.dumps(spec),))
            meta = self.meta  # type: ignore[attr-defined]
            self._r = rdb.RegionHalf(spec, rdb.new_index(self.dim, int(meta["M"]), int(meta["ef_construction"]),  # type: ignore[attr-defined]
                                                         int(meta["ef_search"]), 1024), None, 0, 0)
            self._dirty = True  # type: ignore[attr-defined]
        log.info("index %s now stores regions (%s)", self.path, spec)  # type: ignore[attr-defined]
        return True

    def _region_labels(self, con: Any, tile_label: int, boxes: Any, vectors: Any, start: int) -> list[int]:
        if self._r is None:
            raise InputError(f"index {self.path} does not store regions", "enable_regions(spec) first")  # type: ignore[attr-defined]
        vecs = self._check_vectors(vectors, None, "region vectors")  # type: ignore[attr-defined]
        return rdb.insert_regions(con, tile_label, boxes, vecs, start)

    def _add_region_vectors(self, labels: list[int], vectors: list[np.ndarray]) -> None:
        """hnswlib side of committed regions (caller holds the write lock)."""
        if not labels or self._r is None:
            return
        from .load import grown_capacity

        idx = self._r.index
        cap = idx.get_max_elements()
        grown = grown_capacity(cap, idx.get_current_count() + len(labels))
        if grown > cap:
            idx.resize_index(grown)
        idx.add_items(np.concatenate(vectors).astype(np.float32), np.asarray(labels, dtype=np.int64))
        self._r.live += len(labels)

    def add_regions(self, items: Sequence[tuple[str, Any, Any]]) -> int:
        """Backfill: store ``(tile_id, boxes, vectors)`` for tiles stored without regions, one transaction.

        Tiles whose regions are already stored are skipped (resume-safe). Returns regions added.
        """
        self._need_writable("add regions")  # type: ignore[attr-defined]
        if self._r is None:
            raise InputError(f"index {self.path} does not store regions", "enable_regions(spec) first")  # type: ignore[attr-defined]
        with self._wlock:  # type: ignore[attr-defined]
            nxt = self._r.next_label
            labels: list[int] = []
            vecs: list[np.ndarray] = []
            with self._sql("adding regions") as con, db.transaction(con):  # type: ignore[attr-defined]
                for tile_id, boxes, vectors in items:
                    row = con.execute("SELECT label FROM tiles WHERE tile_id = ?", (tile_id,)).fetchone()
                    if row is None:
                        raise NotFoundError(f"tile {tile_id!r} is not in index {self.path}", "add the tile first")  # type: ignore[attr-defined]
                    got = self._region_labels(con, int(row[0]), boxes, vectors, nxt)
                    if got:
                        labels.extend(got)
                        vecs.append(np.asarray(vectors, dtype=np.float32).reshape(len(got), -1))
                        nxt += len(got)
                con.execute("INSERT OR REPLACE INTO info(key, value) VALUES ('next_region_label', ?)", (str(nxt),))
            self._r.next_label = nxt
            with self._rw.write():  # type: ignore[attr-defined]
                self._add_region_vectors(labels, vecs)
            self._dirty = self._dirty or bool(labels)  # type: ignore[attr-defined]
        return len(labels)

    def tiles_without_regions(self, scene_id: str) -> list[tuple[str, Window]]:
        """(tile_id, window) of the scene's stored tiles that lack their regions (backfill work)."""
        if self._r is None:
            return []
        with self._sql("listing tiles without regions") as con:  # type: ignore[attr-defined]
            rows = con.execute('SELECT tile_id, "window" FROM tiles t WHERE scene_id = ? AND NOT EXISTS '
                               "(SELECT 1 FROM region_tiles r WHERE r.tile_label = t.label) ORDER BY label",
                               (scene_id,)).fetchall()
        return [(r[0], rdb.window_of(r[1])) for r in rows]

    def _delete_regions(self, con: Any, tile_labels: list[int]) -> list[int]:
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

    def _mark_regions_deleted(self, labels: list[int]) -> None:
        """hnswlib side of deleted regions (caller holds the write lock)."""
        if self._r is None:
            return
        for label in labels:
            try:
                self._r.index.mark_deleted(label)
            except RuntimeError:
                log.debug("region label %d was not live in hnsw", label)
        self._r.live -= len(labels)

    # ---- queries ----------------------------------------------------------------------------
    def tile_labels(self, tile_ids: Sequence[str]) -> dict[str, int]:
        """Label of each stored tile id."""
        out: dict[str, int] = {}
        with self._sql("reading tile labels") as con:  # type: ignore[attr-defined]
            for chunk in rdb.chunks(list(tile_ids)):
                q = f"SELECT tile_id, label FROM tiles WHERE tile_id IN ({','.join('?' * len(chunk))})"
                out.update({r[0]: int(r[1]) for r in con.execute(q, list(chunk))})
        return out

    def regions_of(self, tile_labels: Sequence[int]) -> tuple[list[RegionRow], np.ndarray]:
        """Every stored region of the tiles (rows and their vectors, for exact scoring)."""
        if self._r is None:
            dim: int = self.dim  # type: ignore[attr-defined]
            return [], np.zeros((0, dim), np.float32)
        with self._sql("reading regions") as con:  # type: ignore[attr-defined]
            return rdb.regions_of_tiles(con, tile_labels, self.dim)  # type: ignore[attr-defined]

    def records_by_label(self, labels: Iterable[int]) -> dict[int, TileRecord]:
        return self._records(set(int(x) for x in labels))  # type: ignore[attr-defined]

    def tile_vectors(self, labels: Sequence[int]) -> tuple[np.ndarray, list[int]]:
        """Stored tile vectors of ``labels`` (for exact scoring of a filtered set)."""
        with self._sql("reading vectors") as con:  # type: ignore[attr-defined]
            return rdb.fetch_vectors(con, "tiles", labels, self.dim, self.path)  # type: ignore[attr-defined]

    def search_regions(self, vector: np.ndarray, k: int, *,
                       tile_labels: set[int] | None = None) -> list[tuple[RegionRow, float]]:
        """The ``k`` stored regions nearest ``vector`` (cosine similarity), optionally only of ``tile_labels``."""
        if self._r is None or self._r.live == 0:
            return []
        q = self._check_vectors(vector, 1, "query vector")  # type: ignore[attr-defined]
        live = self._r.live
        want = min(live, k if tile_labels is None else k * _OVERFETCH + 16)
        while True:
            with self._rw.read():  # type: ignore[attr-defined]
                r = self._r
                if r is None:
                    return []
                kk = min(want, r.live)
                try:
                    labels, dists = r.index.knn_query(q, k=kk)
                except RuntimeError as e:
                    if kk >= r.live:
                        raise IndexCorruptError(f"region search in {self.path} failed: {e}",  # type: ignore[attr-defined]
                                                repair_hint(self.path)) from e  # type: ignore[attr-defined]
                    want = min(r.live, kk * 4)
                    continue
            with self._sql("reading regions") as con:  # type: ignore[attr-defined]
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

    def labels_within(self, bounds_wgs84: Box | None, scene_ids: Sequence[str] | None) -> list[tuple[int, str]]:
        """(label, footprint WKT) of the tiles whose WGS84 bounds meet ``bounds_wgs84`` and whose scene is listed.

        Uses the R*Tree when the index has one (any writable open adds it), else scans the footprints.
        """
        where: list[str] = []
        params: list[Any] = []
        if scene_ids is not None:
            where.append(f"t.scene_id IN ({','.join('?' * len(scene_ids))})")
            params += list(scene_ids)
        with self._sql("filtering tiles") as con:  # type: ignore[attr-defined]
            if bounds_wgs84 is not None and rdb.has_tables(con):
                x0, y0, x1, y1 = bounds_wgs84
                sql = ("SELECT t.label, t.footprint_wgs84 FROM tiles_rtree r JOIN tiles t ON t.label = r.label "
                       "WHERE r.maxx >= ? AND r.minx <= ? AND r.maxy >= ? AND r.miny <= ?")
                rows = con.execute(sql + "".join(f" AND {w}" for w in where), [x0, x1, y0, y1, *params]).fetchall()
            else:
                sql = "SELECT t.label, t.footprint_wgs84 FROM tiles t" + (f" WHERE {' AND '.join(where)}" if where else "")
                rows = con.execute(sql, params).fetchall()
        if bounds_wgs84 is not None and not rdb.has_tables(self._con()):  # type: ignore[attr-defined]
            rows = [r for r in rows if _meets(rdb.rtree_bounds(r[1]), bounds_wgs84)]
        return [(int(r[0]), r[1]) for r in rows]


def _meets(rt: tuple[float, float, float, float], b: Box) -> bool:
    minx, maxx, miny, maxy = rt
    return maxx >= b[0] and minx <= b[2] and maxy >= b[1] and miny <= b[3]
