"""Every tile of an index with its vector, read once from SQLite (the index's source of truth).

Classification, few-shot learning and location filters work on the whole index
(or an area of it), not on the k nearest neighbours, so they read the tiles
table directly. A :class:`TileTable` is cached per index directory and reused
until the sidecar's ``updated`` stamp or the tile count changes.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..index import db

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from ..index.store import IndexStore
    from ..types import TileRecord

log = logging.getLogger(__name__)

_cache: dict[str, tuple[tuple[Any, ...], TileTable]] = {}
_cache_lock = threading.Lock()


@dataclass
class TileTable:
    """Tiles of an index as parallel arrays; ``vectors`` are float32 and L2-normalised."""

    records: list[TileRecord]
    vectors: np.ndarray  # (n, dim)
    lat: np.ndarray  # (n,) tile centres, degrees
    lon: np.ndarray

    def __len__(self) -> int:
        return len(self.records)

    def take(self, idx: np.ndarray) -> TileTable:
        """The rows ``idx`` (an index array or boolean mask) as a new table."""
        idx = np.flatnonzero(idx) if idx.dtype == bool else np.asarray(idx, dtype=int)
        return TileTable([self.records[i] for i in idx.tolist()], self.vectors[idx], self.lat[idx], self.lon[idx])

    def positions(self, tile_ids: list[str]) -> list[int]:
        """Row of each tile id (InputError naming the ids not in the table)."""
        where = {r.tile_id: i for i, r in enumerate(self.records)}
        missing = [t for t in tile_ids if t not in where]
        if missing:
            raise InputError(f"tile id(s) {missing[:3]} are not in this index ({len(missing)} unknown)",
                             "mark tiles from this index's own hits")
        return [where[t] for t in tile_ids]


def normalise(v: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    v = np.asarray(v, dtype=np.float32)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


def load_tiles(store: IndexStore) -> TileTable:
    """All live tiles of ``store`` with their vectors (cached until the index changes)."""
    key = str(store.path)
    stamp = (store.meta.get("updated"), store.meta.get("count"), int(store.count))
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
    con = db.connect(store.path / "meta.sqlite", readonly=True)
    try:
        rows = con.execute(f"SELECT {db.TILE_COLS}, vector FROM tiles ORDER BY label").fetchall()
    finally:
        con.close()
    records = [db.tile_from_row(r[:-1]) for r in rows]
    dim = int(store.dim)
    vectors = (normalise(np.stack([db.blob_vector(r[-1], dim) for r in rows])) if rows
               else np.zeros((0, dim), np.float32))
    table = TileTable(records, vectors, np.array([r.center_lat for r in records], dtype=float),
                      np.array([r.center_lon for r in records], dtype=float))
    with _cache_lock:
        _cache[key] = (stamp, table)
    log.info("read %d tiles of %s", len(records), key)
    return table


def area_mask(table: Any, area: BaseGeometry | None, mode: str = "centre") -> np.ndarray:
    """Items (tiles, or regions with ``polygons``) ``area`` (WGS84 lon/lat) keeps under ``mode``; all when None.

    ``centre``: the item's centre lies in the area; ``intersects`` / ``inside``: its footprint shares more
    than a sliver with / lies wholly in the area (see :func:`geovec.backend.search.filters.keeps`).
    """
    if area is None:
        return np.ones(len(table), dtype=bool)
    import shapely

    from ..search.filters import keep_mask

    polygons = getattr(table, "polygons", None)
    if polygons is None and mode != "centre":
        polygons = shapely.from_wkt([r.footprint_wgs84 for r in table.records])
    return np.asarray(keep_mask(area, polygons, table.lon, table.lat, mode), dtype=bool)


def parse_area(box: list[float] | None, wkt: str | None, crs: str) -> BaseGeometry | None:
    """A box or WKT polygon in ``crs`` -> a WGS84 geometry (None when neither is given)."""
    if box is None and wkt is None:
        return None
    from shapely import wkt as shp_wkt
    from shapely.geometry import box as shp_box

    from ..raster import geometry

    if box is not None:
        x0, y0, x1, y1 = (float(v) for v in box)
        if not (x0 < x1 and y0 < y1):
            raise InputError(f"area box {box} is empty or inverted (need xmin < xmax and ymin < ymax)",
                             "give xmin ymin xmax ymax")
        geom = shp_box(x0, y0, x1, y1)
    else:
        try:
            geom = shp_wkt.loads(str(wkt))
        except Exception as e:  # noqa: BLE001 - shapely raises several types
            raise InputError(f"area polygon is not valid WKT: {str(wkt)[:60]!r}", "give e.g. POLYGON((x y, ...))") from e
        if geom.is_empty or geom.area <= 0:
            raise InputError(f"area polygon {str(wkt)[:60]!r} has no area", "draw a polygon, not a line or point")
    return geometry.reproject_geometry(geom, geometry.parse_crs(crs), "EPSG:4326")


def date_mask(store: IndexStore, table: TileTable, opts: Any) -> np.ndarray:
    """Tiles whose scene was acquired within ``opts.date_from`` .. ``opts.date_to``; all when neither is set.

    Raises:
        InputError: a malformed date, or no scene of the index dated in that range.
    """
    if opts is None or (getattr(opts, "date_from", None) is None and getattr(opts, "date_to", None) is None):
        return np.ones(len(table), dtype=bool)
    from ..temporal.hits import date_filter_scenes

    ids = set(date_filter_scenes(store, opts.date_from, opts.date_to) or [])
    return np.array([r.scene_id in ids for r in table.records], dtype=bool)
