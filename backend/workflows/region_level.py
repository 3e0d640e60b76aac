"""Classification at region level: the index's stored regions (boxes inside each tile) are the items.

An index built with ``--regions`` stores candidate boxes of every tile with their own
vectors. With ``level="region"`` zero-shot and few-shot classification score those
vectors instead of the tile vectors and write one polygon per region (class, score,
margin, tile_id, bbox_image). Rules:

* an area keeps the regions whose box centre lies inside it;
* few-shot training examples are the regions whose box centre lies in a labelled
  polygon; for a point (or a polygon holding no region centre) the smallest region
  containing the point (its representative point for a polygon);
* the class-map GeoTIFF stays on each scene's grid; regions overlap, so each pixel
  takes the class of the best-scoring region covering it (regions are painted in
  ascending score, the best last).

An index without stored regions is refused with one line: re-index with ``--regions``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..errors import InputError
from .labelling import Labelling
from .tiles import TileTable, normalise

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from ..index.store import IndexStore
    from ..types import Box


WGS84 = "EPSG:4326"  # the CRS of RegionTable.polygons


class Labelled(Protocol):
    """A labelled feature (:class:`.fewshot.LabelFeature`): its class and WGS84 geometry."""

    label: str
    geometry: BaseGeometry


def require_regions(store: IndexStore) -> None:
    """InputError unless ``store`` holds region vectors."""
    if store.regions_spec is None:
        raise InputError(f"index {store.path} stores no regions, so level 'region' has nothing to classify",
                         "re-index with --regions (e.g. --regions 'grid=1,2,3;overlap=0.25'), or classify at "
                         "level tile")


@dataclass
class RegionTable(TileTable):
    """Regions as parallel arrays: ``records`` is each region's tile, ``lat``/``lon`` its box centre."""

    boxes: list[Box]
    polygons: np.ndarray  # (n,) shapely polygons, WGS84
    tile_size: int

    def take(self, idx: np.ndarray) -> RegionTable:
        idx = np.flatnonzero(idx) if idx.dtype == bool else np.asarray(idx, dtype=int)
        rows = idx.tolist()
        return RegionTable([self.records[i] for i in rows], self.vectors[idx], self.lat[idx], self.lon[idx],
                           [self.boxes[i] for i in rows], self.polygons[idx], self.tile_size)

    def tile_count(self) -> int:
        return len({r.tile_id for r in self.records})


def load_regions(store: IndexStore, tiles: TileTable) -> RegionTable:
    """Every stored region of the tiles in ``tiles``, with unit vectors and WGS84 box polygons."""
    import shapely

    from ..search.features import Scenes, region_polygons
    from ..search.hits import RegionHit
    from ..search.query import index_tiling

    require_regions(store)
    labels = store.tile_labels([r.tile_id for r in tiles.records])
    by_label = {labels[r.tile_id]: r for r in tiles.records if r.tile_id in labels}
    rows, vecs = store.regions_of(list(by_label))
    records = [by_label[r.tile_label] for r in rows]
    boxes = [tuple(float(v) for v in r.box) for r in rows]
    tile_size = index_tiling(store).tile_size
    hits = [RegionHit(rec, box, 0.0) for rec, box in zip(records, boxes, strict=True)]  # type: ignore[arg-type]
    polys = np.array(region_polygons(Scenes(store), hits, tile_size, WGS84) if hits else [], dtype=object)
    cx, cy = (shapely.get_coordinates(shapely.centroid(polys)).T if len(polys)
              else (np.zeros(0), np.zeros(0)))
    return RegionTable(records, normalise(vecs), np.asarray(cy, dtype=float), np.asarray(cx, dtype=float),
                       boxes, polys, tile_size)  # type: ignore[arg-type]


def regions_under(table: RegionTable, feats: Sequence[Labelled]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(region rows, feature index, labels) of the training regions of each feature (see the module doc)."""
    import shapely

    areas = shapely.area(table.polygons) if len(table) else np.zeros(0)
    rows: list[int] = []
    owner: list[int] = []
    for j, f in enumerate(feats):
        inside = np.flatnonzero(shapely.contains_xy(f.geometry, table.lon, table.lat)) \
            if f.geometry.area > 0 else np.zeros(0, dtype=int)
        if not len(inside) and len(table):
            cover = np.flatnonzero(shapely.covers(table.polygons, f.geometry.representative_point()))
            inside = cover[np.argsort(areas[cover], kind="stable")[:1]]
        rows.extend(inside.tolist())
        owner.extend([j] * len(inside))
    return np.array(rows, dtype=np.int64), np.array(owner, dtype=np.int64), np.array(
        [feats[j].label for j in owner], dtype=object)


@dataclass
class RegionLabelling(Labelling):
    """A :class:`Labelling` whose items are regions (polygons of the boxes, class maps painted per region)."""

    table: RegionTable
    store: IndexStore | None = None  # read for the scenes of the region polygons

    level = "region"
    layer_name = "regions"

    def tile_count(self) -> int:
        return self.table.tile_count()

    def pixel_box(self, i: int) -> tuple[int, int, int, int]:
        from ..raster import geometry

        c0, r0, c1, r1 = geometry.image_box_to_pixel_box(self.table.records[i].window, self.table.tile_size,
                                                         self.table.boxes[i])
        return int(round(c0)), int(round(r0)), int(round(c1)), int(round(r1))

    def features(self, out_crs: str) -> list[dict[str, Any]]:
        """One GeoJSON Feature per region (its box in ``out_crs``)."""
        from ..search.features import Scenes, region_rings
        from ..search.hits import RegionHit

        if not len(self.table):
            return []
        assert self.store is not None
        if out_crs == WGS84:  # the polygons load_regions made: no second transform
            rings = [[list(xy) for xy in p.exterior.coords] for p in self.table.polygons]
        else:
            hits = [RegionHit(rec, box, 0.0) for rec, box in zip(self.table.records, self.table.boxes, strict=True)]
            rings = region_rings(Scenes(self.store), hits, self.table.tile_size, out_crs)
        out = []
        for i, rec in enumerate(self.table.records):
            out.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [rings[i]]}, "properties": {
                "class": self.classes[int(self.best[i])], "class_id": int(self.best[i]) + 1,
                "score": round(float(self.score[i]), 6), "margin": round(float(self.margin[i]), 6),
                "level": "region", "tile_id": rec.tile_id, "scene_id": rec.scene_id, "window": list(rec.window),
                "bbox_image": [round(float(v), 3) for v in self.table.boxes[i]]}})
        return out


def labelling(table: TileTable, classes: list[str], scores: np.ndarray, store: IndexStore) -> Labelling:
    """The :class:`Labelling` of ``table``'s items: :class:`RegionLabelling` for regions, else per tile."""
    if isinstance(table, RegionTable):
        return RegionLabelling(table, classes, scores, store)
    return Labelling(table, classes, scores)
