"""Spatial and scene filters of a search: ``within`` (GeoJSON / WKT / a vector file, any CRS) and ``scenes``.

The filter runs in SQLite first (the tiles' WGS84 bounds in an R*Tree, the scene
ids), then exactly against each candidate's footprint. The search then scores the
kept tiles exactly when they are few (:data:`EXACT_MAX`) instead of asking hnswlib.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, NotFoundError
from ..paths import check_read, looks_like_path

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from ..index.store import IndexStore

log = logging.getLogger(__name__)

#: At most this many filtered tiles are scored exactly (brute force over their stored vectors).
EXACT_MAX = 20_000
_WITHIN_HINT = "give a GeoJSON geometry/feature/collection, a WKT string, or a path to a vector file"


@dataclass
class TileFilter:
    """The tiles a filtered search may return (labels), and what filtered them."""

    labels: set[int]
    description: dict[str, Any]
    #: the WGS84 area of ``within`` (None for a scenes-only filter) and its ``within_mode``
    area: BaseGeometry | None = None
    mode: str = "centre"


def parse_within(text: str, crs: str = "EPSG:4326") -> BaseGeometry:
    """A ``within`` value (GeoJSON text, WKT, or a vector file path) in ``crs`` -> a WGS84 geometry."""
    from shapely import wkt
    from shapely.errors import ShapelyError
    from shapely.geometry import shape
    from shapely.ops import unary_union

    from ..raster import geometry

    value = (text or "").strip()
    if not value:
        raise InputError("within is empty", _WITHIN_HINT)
    src_crs: Any = crs
    geom: BaseGeometry | None = None
    if value.startswith("{"):
        try:
            obj = json.loads(value)
            feats = obj.get("features") if obj.get("type") == "FeatureCollection" else [obj]
            geoms = [shape(f.get("geometry", f) if f.get("type") == "Feature" else f) for f in feats]
            geom = unary_union(geoms)
        except (ValueError, AttributeError, TypeError, KeyError, ShapelyError) as e:
            raise InputError(f"within {value[:80]!r} is not valid GeoJSON: {e}", _WITHIN_HINT) from e
    elif looks_like_path(value) or _is_file(value):
        path = check_read(value, "within file")  # a server request: under the allowed folders, before existence
        if not _is_file(value):
            raise NotFoundError(f"within file {value[:300]!r} does not exist", _WITHIN_HINT)
        geom, src_crs = _read_vector_file(path, crs)
    else:
        try:
            geom = wkt.loads(value)
        except (ShapelyError, ValueError, TypeError) as e:
            if len(value) < 300 and ("/" in value or value.endswith((".geojson", ".json", ".gpkg", ".shp"))):
                raise NotFoundError(f"within file {value!r} does not exist", _WITHIN_HINT) from e
            raise InputError(f"within {value[:80]!r} is neither GeoJSON, WKT nor an existing file", _WITHIN_HINT) from e
    if geom is None or geom.is_empty or geom.area <= 0:
        raise InputError(f"within {value[:80]!r} has no area (need a polygon or box)", _WITHIN_HINT)
    out = geometry.reproject_geometry(geom, src_crs, "EPSG:4326")
    return out if out.is_valid else out.buffer(0)


def _is_file(value: str) -> bool:
    """Whether ``value`` names an existing file (a long WKT string is no path: the OS refuses the name)."""
    try:
        return Path(value).expanduser().is_file()
    except (OSError, ValueError):
        return False


def _read_vector_file(path: Path, crs: str) -> tuple[BaseGeometry, Any]:
    """Union of a vector file's geometries, in the file's own CRS (``crs`` when it has none)."""
    import fiona
    from shapely.geometry import shape
    from shapely.ops import unary_union

    try:
        with fiona.open(path) as src:
            geoms = [shape(f["geometry"]) for f in src if f["geometry"] is not None]
            file_crs = src.crs_wkt or crs
    except Exception as e:  # noqa: BLE001 - fiona raises many types
        raise InputError(f"within file {str(path)!r} cannot be read: {e}", _WITHIN_HINT) from e
    if not geoms:
        raise InputError(f"within file {str(path)!r} has no geometry", _WITHIN_HINT)
    return unary_union(geoms), file_crs


def resolve_scenes(store: IndexStore, names: list[str]) -> list[str]:
    """Scene ids of ``names`` (scene names or ids); NotFoundError naming the unknown ones and the choices."""
    rows = store.scenes()
    ids: list[str] = []
    unknown: list[str] = []
    for name in names:
        hit = [r["scene_id"] for r in rows if name in (r["scene_id"], r["name"])]
        if hit:
            ids += hit
        else:
            unknown.append(name)
    if unknown:
        known = ", ".join(sorted({r["name"] for r in rows})[:20]) or "none"
        raise NotFoundError(f"scene(s) {unknown} are not in index {store.path}", f"indexed scenes: {known}")
    return sorted(set(ids))


def _shares_area(prepared: Any, area: BaseGeometry, footprint: BaseGeometry) -> bool:
    """Whether the tile footprint and the area share more than a sliver (touching edges do not count)."""
    if not prepared.intersects(footprint):
        return False
    return area.intersection(footprint).area > 1e-6 * footprint.area


def keeps(prepared: Any, area: BaseGeometry, footprint: BaseGeometry, mode: str = "centre") -> bool:
    """Whether ``area`` keeps a tile or region with this footprint (both WGS84) under ``mode``.

    ``centre``: the footprint's centre lies in the area (on its edge counts); ``intersects``: they share
    more than a sliver; ``inside``: the footprint lies in the area (up to a sliver of 1e-6 of its area).
    """
    from shapely.geometry import Point

    if mode == "centre":
        return bool(prepared.intersects(Point(footprint.centroid.x, footprint.centroid.y)))
    if not _shares_area(prepared, area, footprint):
        return False
    if mode == "inside":
        return footprint.difference(area).area <= 1e-6 * footprint.area
    return True


def keep_mask(area: BaseGeometry, footprints: Any, lon: Any, lat: Any, mode: str = "centre") -> Any:
    """Boolean array: which of ``footprints`` (shapely polygons, WGS84) with centres ``lon``/``lat`` ``area`` keeps."""
    import numpy as np
    import shapely

    if mode == "centre":
        return np.asarray(shapely.intersects_xy(area, np.asarray(lon, float), np.asarray(lat, float)), dtype=bool)
    from shapely.prepared import prep

    pa = prep(area)
    return np.array([keeps(pa, area, fp, mode) for fp in footprints], dtype=bool)


def tile_filter(store: IndexStore, *, within: str | None = None, within_crs: str = "EPSG:4326",
                scenes: list[str] | None = None, date_from: str | None = None,
                date_to: str | None = None, within_mode: str = "centre") -> TileFilter | None:
    """The tiles a search may return under ``within``/``scenes``; None when neither is given.

    ``within_mode`` (see :func:`keeps`) decides which tiles the area keeps; ``TileFilter.area`` carries the
    WGS84 area so region outlines can be held to the same rule.

    Raises:
        InputError: ``within`` is malformed, or covers no indexed scene (nothing to search).
        NotFoundError: a listed scene is not in the index.
    """
    if within is None and not scenes and date_from is None and date_to is None:
        return None
    from shapely import wkt
    from shapely.prepared import prep

    from ..temporal.hits import date_filter_scenes

    scene_ids = resolve_scenes(store, scenes) if scenes else None
    dated = date_filter_scenes(store, date_from, date_to)  # scenes acquired in [date_from, date_to]
    if dated is not None:
        scene_ids = dated if scene_ids is None else [s for s in scene_ids if s in set(dated)]
    area = parse_within(within, within_crs) if within is not None else None
    rows = store.labels_within(area.bounds if area is not None else None, scene_ids)
    if area is not None:
        pa = prep(area)
        rows = [(label, fp) for label, fp in rows if keeps(pa, area, wkt.loads(fp), within_mode)]
    desc: dict[str, Any] = {}
    if scenes:
        desc["scenes"] = list(scenes)
    if dated is not None:
        desc.update(date_from=date_from, date_to=date_to, dated_scenes=len(dated))
    if within is not None:
        desc.update(within_crs=within_crs, within_mode=within_mode, within_bounds_wgs84=[round(v, 7) for v in area.bounds])  # type: ignore[union-attr]
    if not rows:
        what = (f"within {within[:80]!r} (in {within_crs})" if within is not None else "") + \
            (f" scenes {scenes}" if scenes else "") + \
            (f" dated {date_from or '...'} to {date_to or '...'}" if dated is not None else "")
        raise InputError(f"{what.strip()} covers no indexed scene of index {store.path} (or, within mode "
                         f"{within_mode}, no tile)",
                         "draw the area over indexed imagery (check --within-crs), use --within-mode intersects, "
                         "or list other scenes")
    desc["tiles"] = len(rows)
    return TileFilter({label for label, _ in rows}, desc, area, within_mode)
