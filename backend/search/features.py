"""Hits as GeoJSON features: a tile's footprint and properties, a region's box as a polygon in any CRS."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..types import Box, Hit, Scene, Stretch, TileRecord
from .hits import RegionHit, overlaps

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from ..index.store import IndexStore
    from .filters import TileFilter

log = logging.getLogger(__name__)


def hit_feature(hit: Hit, out_crs: str) -> dict[str, Any]:
    """One hit as a GeoJSON Feature dict with its footprint in ``out_crs``."""
    from shapely.geometry import box, mapping

    from ..raster import geometry

    rec: TileRecord = hit.record
    native = box(*rec.bounds)
    geom = geometry.reproject_geometry(native, rec.crs_wkt, out_crs)
    return {"type": "Feature", "geometry": mapping(geom), "properties": tile_properties(hit)}


def tile_properties(hit: Hit) -> dict[str, Any]:
    """The GeoJSON properties of a tile hit (see :class:`~geovec.backend.schemas.SearchResponse`)."""
    rec: TileRecord = hit.record
    return {
            "rank": hit.rank,
            "score": round(hit.score, 6),
            "tile_id": rec.tile_id,
            "scene_id": rec.scene_id,
            "source": rec.sources[0] if rec.sources else None,
            "sources": list(rec.sources),
            "window": list(rec.window),
            "center_lat": rec.center_lat,
            "center_lon": rec.center_lon,
            "gsd": rec.gsd,
            "valid_fraction": rec.valid_fraction,
            "regions": [r.__dict__ for r in hit.regions],
            "level": "tile",
            **hit.extra,
    }


class Scenes:
    """Stored scenes by id, read once per search."""

    def __init__(self, store: IndexStore) -> None:
        self.store = store
        self._cache: dict[str, tuple[Scene, Stretch]] = {}

    def get(self, scene_id: str) -> tuple[Scene, Stretch]:
        if scene_id not in self._cache:
            got = self.store.scene(scene_id)
            if got is None:
                raise InputError(f"scene {scene_id!r} vanished from index {self.store.path} during the search",
                                 "retry the search")
            self._cache[scene_id] = got
        return self._cache[scene_id]


def region_rings(scenes: Scenes, hits: list[RegionHit], tile_size: int, crs: str) -> list[list[list[float]]]:
    """The boxes of ``hits`` as closed rings in ``crs``: one coordinate transform per scene for all of them.

    Regions are at most a tile across, so their four corners are transformed (edges stay straight
    to well under a pixel at that scale).
    """
    from ..raster import geometry

    out: list[list[list[float]]] = [[] for _ in hits]
    by_scene: dict[str, list[int]] = {}
    for i, h in enumerate(hits):
        by_scene.setdefault(h.record.scene_id, []).append(i)
    for scene_id, idx in by_scene.items():
        scene, _ = scenes.get(scene_id)
        cols: list[float] = []
        rows: list[float] = []
        for i in idx:
            c0, r0, c1, r1 = geometry.image_box_to_pixel_box(hits[i].record.window, tile_size, hits[i].box)
            cols += [c0, c1, c1, c0]
            rows += [r0, r0, r1, r1]
        xs, ys = geometry.pixels_to_native(scene, cols, rows)
        ox, oy = geometry.transform_xy(xs, ys, scene.crs_wkt, crs)
        xl, yl = ox.tolist(), oy.tolist()
        for j, i in enumerate(idx):
            ring = [[xl[4 * j + m], yl[4 * j + m]] for m in range(4)]
            out[i] = ring + [ring[0]]
    return out


def region_polygons(scenes: Scenes, hits: list[RegionHit], tile_size: int, crs: str) -> list[Any]:
    """The boxes of ``hits`` as shapely polygons in ``crs``."""
    from shapely.geometry import Polygon

    return [Polygon(r) for r in region_rings(scenes, hits, tile_size, crs)]


def region_geometry(scenes: Scenes, rec: TileRecord, box: Box, tile_size: int, crs: str) -> Any:
    return region_polygons(scenes, [RegionHit(rec, box, 0.0)], tile_size, crs)[0]


def region_dicts(scenes: Scenes, hits: list[RegionHit], tile_size: int, crs: str) -> list[dict[str, Any]]:
    """``{"rank", "score", "bbox_image", "geometry"}`` per hit (rank = position in ``hits``)."""
    rings = region_rings(scenes, hits, tile_size, crs)
    return [{"rank": i + 1, "score": round(h.score, 6), "bbox_image": [round(float(v), 3) for v in h.box],
             "geometry": {"type": "Polygon", "coordinates": [ring]}} for i, (h, ring) in enumerate(zip(hits, rings, strict=True))]


def not_excluded(scenes: Scenes, h: RegionHit, tile_size: int, exclude: BaseGeometry | None) -> bool:
    """Whether region ``h`` stays clear of ``exclude`` (its tile does, or its own box does)."""
    from shapely import wkt

    if exclude is None or not overlaps(wkt.loads(h.record.footprint_wgs84), exclude):
        return True
    return not overlaps(region_geometry(scenes, h.record, h.box, tile_size, "EPSG:4326"), exclude)


def in_area(scenes: Scenes, h: RegionHit, tile_size: int, flt: TileFilter | None, mode: str) -> bool:
    """Whether the filter's area (if any) keeps region ``h`` under ``mode`` (its outline, not its tile)."""
    if flt is None or flt.area is None:
        return True
    from shapely.prepared import prep

    from .filters import keeps

    return keeps(prep(flt.area), flt.area, region_geometry(scenes, h.record, h.box, tile_size, "EPSG:4326"), mode)


def region_features(scenes: Scenes, ranked: list[RegionHit], tile_size: int, crs: str) -> list[dict[str, Any]]:
    """Ranked regions as GeoJSON features: each box's polygon, with its tile's properties."""
    out = []
    for i, (r, reg) in enumerate(zip(ranked, region_dicts(scenes, ranked, tile_size, crs), strict=True)):
        reg["rank"] = 1
        props = tile_properties(Hit(rank=i + 1, score=r.score, record=r.record))
        props.update(level="region", bbox_image=reg["bbox_image"], regions=[reg])
        out.append({"type": "Feature", "geometry": reg["geometry"], "properties": props})
    return out
