"""CRS and pixel math: any CRS <-> native pixels <-> model image pixels <-> polygons.

Every transform goes through pyproj with ``always_xy=True``: coordinates are
always (x, y) = (easting, northing) or (lon, lat), whatever the CRS's axis order.
Pixel coordinates are fractional (col, row) in the scene's native grid, with
(0, 0) the top-left corner of the top-left pixel (GDAL's convention).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from affine import Affine
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError as PyprojCRSError
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from ..errors import CRSError, InputError, OutOfBoundsError
from ..types import Box, Scene, Window

#: Points per polygon edge when a box or window is reprojected (curved edges in the target CRS).
EDGE_POINTS = 11
_CRS_HINT = "give an EPSG code (e.g. EPSG:4326 or 32617), a WKT string or a PROJ string"


def parse_crs(text: str | int | CRS) -> CRS:
    """Parse ``"EPSG:4326"``, ``"4326"``, ``4326``, WKT or PROJ text into a :class:`pyproj.CRS`.

    Raises:
        CRSError: the text names no CRS pyproj knows.
    """
    if isinstance(text, CRS):
        return text
    if isinstance(text, bool) or text is None:
        raise CRSError(f"CRS {text!r} is not a CRS", _CRS_HINT)
    return _parse_crs_cached(str(text).strip())


@lru_cache(maxsize=256)
def _parse_crs_cached(text: str) -> CRS:
    if not text:
        raise CRSError("CRS is empty", _CRS_HINT)
    spec: Any = int(text) if text.isdigit() else text
    try:
        return CRS.from_user_input(spec)
    except (PyprojCRSError, ValueError, TypeError) as e:
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise CRSError(f"CRS {shown!r} cannot be parsed ({e})", _CRS_HINT) from e


@lru_cache(maxsize=256)
def _transformer_cached(src: str, dst: str) -> Transformer:
    return Transformer.from_crs(_parse_crs_cached(src), _parse_crs_cached(dst), always_xy=True)


def _key(crs: str | int | CRS) -> str:
    return crs.to_wkt() if isinstance(crs, CRS) else str(crs).strip()


def transformer(src: str | int | CRS, dst: str | int | CRS) -> Transformer:
    """A cached always-xy transformer from ``src`` to ``dst`` (Transformer objects are thread-safe to call)."""
    parse_crs(src), parse_crs(dst)  # raise CRSError for bad input before building
    return _transformer_cached(_key(src), _key(dst))


def _same(src: str | int | CRS, dst: str | int | CRS) -> bool:
    a, b = _key(src), _key(dst)
    if a == b:
        return True
    parse_crs(src), parse_crs(dst)  # raise CRSError for bad input
    return _same_cached(a, b)


@lru_cache(maxsize=1024)
def _same_cached(a: str, b: str) -> bool:
    """CRS equality (slow in pyproj: it compares definitions), cached per pair of CRS texts."""
    return bool(_parse_crs_cached(a) == _parse_crs_cached(b))


def transform_xy(xs: Any, ys: Any, src: str | int | CRS, dst: str | int | CRS) -> tuple[np.ndarray, np.ndarray]:
    """Transform coordinate arrays; non-finite outputs are kept as inf/nan for the caller to judge."""
    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    if _same(src, dst):
        return x, y
    try:
        ox, oy = transformer(src, dst).transform(x, y, errcheck=False)
    except Exception as e:  # pyproj raises ProjError for impossible transforms
        raise CRSError(f"cannot transform coordinates from {_short(src)} to {_short(dst)} ({e})",
                       "check that the coordinates are in the CRS you named") from e
    return np.asarray(ox, dtype=float), np.asarray(oy, dtype=float)


def _short(crs: str | int | CRS) -> str:
    c = parse_crs(crs)
    auth = c.to_authority()
    return ":".join(auth) if auth else (c.name or "custom CRS")


def _check_latlon_range(xs: np.ndarray, ys: np.ndarray, crs: CRS) -> None:
    if crs.is_geographic and (np.any(np.abs(ys) > 90) or np.any(np.abs(xs) > 360)):
        raise OutOfBoundsError(
            f"coordinates {list(np.round(xs, 6))}, {list(np.round(ys, 6))} are not valid lon/lat in {_short(crs)}",
            "give x = longitude (-180..180) and y = latitude (-90..90), in that order")


def to_pixels(scene: Scene, xs: Any, ys: Any, crs: str | int | CRS) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in ``crs`` -> fractional native (cols, rows) of ``scene``."""
    c = parse_crs(crs)
    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise InputError(f"coordinates must be finite numbers, got x={x.tolist()} y={y.tolist()}",
                         "give real numbers (no NaN or infinity)")
    _check_latlon_range(x, y, c)
    nx, ny = transform_xy(x, y, c, scene.crs_wkt)
    inv = ~Affine(*scene.transform)
    with np.errstate(invalid="ignore", over="ignore"):  # inf from an impossible transform stays non-finite
        cols = inv.a * nx + inv.b * ny + inv.c
        rows = inv.d * nx + inv.e * ny + inv.f
    return cols, rows


def pixels_to_native(scene: Scene, cols: Any, rows: Any) -> tuple[np.ndarray, np.ndarray]:
    """Fractional native pixels -> coordinates in the scene's CRS."""
    t = Affine(*scene.transform)
    c = np.asarray(cols, dtype=float)
    r = np.asarray(rows, dtype=float)
    return t.a * c + t.b * r + t.c, t.d * c + t.e * r + t.f


def _ring(x0: float, y0: float, x1: float, y1: float, n: int = EDGE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """A closed, densified ring around a box (counter-clockwise in x-right/y-up axes)."""
    t = np.linspace(0.0, 1.0, n)[:-1]
    xs = np.concatenate([x0 + (x1 - x0) * t, np.full_like(t, x1), x1 - (x1 - x0) * t, np.full_like(t, x0)])
    ys = np.concatenate([np.full_like(t, y0), y0 + (y1 - y0) * t, np.full_like(t, y1), y1 - (y1 - y0) * t])
    return np.append(xs, xs[0]), np.append(ys, ys[0])


def box_to_pixel_box(scene: Scene, box: Box | Sequence[float], crs: str | int | CRS) -> Box:
    """A box (xmin, ymin, xmax, ymax) in ``crs`` -> its native-pixel box, clipped to the raster.

    Raises:
        InputError: NaN/infinite values, or an inverted or empty box.
        OutOfBoundsError: the box does not overlap the raster.
        CRSError: ``crs`` cannot be parsed or the box cannot be transformed.
    """
    if len(box) != 4:
        raise InputError(f"a box needs 4 numbers (xmin, ymin, xmax, ymax), got {len(box)}", "give 4 numbers")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise InputError(f"box {list(box)} has a NaN or infinite value", "give finite coordinates")
    if not (x0 < x1 and y0 < y1):
        raise InputError(f"box {list(box)} is inverted or empty: need xmin < xmax and ymin < ymax",
                         "give the box as xmin ymin xmax ymax")
    xs, ys = _ring(x0, y0, x1, y1)
    cols, rows = to_pixels(scene, xs, ys, crs)
    ok = np.isfinite(cols) & np.isfinite(rows)
    if not np.any(ok):
        raise OutOfBoundsError(f"box {list(box)} in {_short(crs)} cannot be placed on raster {scene.name}",
                               "check that the box is in the CRS you named")
    c0, c1 = float(cols[ok].min()), float(cols[ok].max())
    r0, r1 = float(rows[ok].min()), float(rows[ok].max())
    cc0, cr0 = max(c0, 0.0), max(r0, 0.0)
    cc1, cr1 = min(c1, float(scene.width)), min(r1, float(scene.height))
    if cc1 - cc0 <= 1e-9 or cr1 - cr0 <= 1e-9:
        raise OutOfBoundsError(
            f"box {list(box)} in {_short(crs)} falls at pixels ({c0:.1f}, {r0:.1f}, {c1:.1f}, {r1:.1f}), outside "
            f"raster {scene.name} (0..{scene.width} x 0..{scene.height})",
            "draw the box over the raster, or check the CRS")
    return (cc0, cr0, cc1, cr1)


def context_window(scene: Scene, pixel_box: Box | Sequence[float], tile_size: int) -> Window:
    """The square window the model sees around ``pixel_box``: at least ``tile_size`` px, inside the raster.

    The box is centred when the raster allows; near an edge the window shifts to stay
    inside. A raster smaller than the window gets a window at (0, 0) (read boundless,
    like the grid sampler's single tile).
    """
    x0, y0, x1, y1 = (float(v) for v in pixel_box)
    size = max(int(tile_size), int(math.ceil(max(x1 - x0, y1 - y0))))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2

    def place(centre: float, extent: int) -> int:
        if extent <= size:
            return 0
        return int(min(max(round(centre - size / 2), 0), extent - size))

    return (place(cx, scene.width), place(cy, scene.height), size, size)


def pixel_box_to_image_box(pixel_box: Box | Sequence[float], window: Window | Sequence[int], out_size: int) -> Box:
    """Native pixels -> pixels of the ``out_size`` x ``out_size`` image read from ``window`` (clipped)."""
    col, row, w, h = (int(v) for v in window)
    sx, sy = out_size / w, out_size / h
    x0, y0, x1, y1 = (float(v) for v in pixel_box)

    def clip(v: float) -> float:
        return float(min(max(v, 0.0), float(out_size)))

    return (clip((x0 - col) * sx), clip((y0 - row) * sy), clip((x1 - col) * sx), clip((y1 - row) * sy))


def image_box_to_pixel_box(window: Window | Sequence[int], out_size: int, image_box: Box | Sequence[float]) -> Box:
    """Pixels of the model image read from ``window`` -> native pixels (inverse of the above)."""
    col, row, w, h = (int(v) for v in window)
    sx, sy = w / out_size, h / out_size
    x0, y0, x1, y1 = (float(v) for v in image_box)
    return (col + x0 * sx, row + y0 * sy, col + x1 * sx, row + y1 * sy)


def _pixel_box_polygon(scene: Scene, pixel_box: Box, dst_crs: str | int | CRS) -> Polygon:
    c0, r0, c1, r1 = pixel_box
    cols, rows = _ring(c0, r0, c1, r1)
    xs, ys = pixels_to_native(scene, cols, rows)
    ox, oy = transform_xy(xs, ys, scene.crs_wkt, dst_crs)
    if not (np.all(np.isfinite(ox)) and np.all(np.isfinite(oy))):
        raise CRSError(f"raster {scene.name} area {pixel_box} cannot be expressed in {_short(dst_crs)}",
                       "choose an output CRS that covers the raster")
    poly = Polygon(zip(ox.tolist(), oy.tolist(), strict=True))
    return poly if poly.is_valid else poly.buffer(0)  # type: ignore[return-value]


def image_box_to_geometry(scene: Scene, window: Window | Sequence[int], out_size: int,
                          image_box: Box | Sequence[float], dst_crs: str | int | CRS) -> Polygon:
    """A box in model-image pixels -> a polygon in ``dst_crs``."""
    return _pixel_box_polygon(scene, image_box_to_pixel_box(window, out_size, image_box), dst_crs)


def window_to_geometry(scene: Scene, window: Window | Sequence[int], dst_crs: str | int | CRS) -> Polygon:
    """The footprint of a native-pixel window as a polygon in ``dst_crs``."""
    col, row, w, h = (int(v) for v in window)
    return _pixel_box_polygon(scene, (col, row, col + w, row + h), dst_crs)


def window_bounds(scene: Scene, window: Window | Sequence[int]) -> Box:
    """The window's bounds in the scene's native CRS."""
    col, row, w, h = (int(v) for v in window)
    xs, ys = pixels_to_native(scene, [col, col + w, col, col + w], [row, row, row + h, row + h])
    return (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))


def pixel_to_latlon(scene: Scene, col: float, row: float) -> tuple[float, float]:
    """A native pixel position -> (lat, lon) in WGS84 degrees."""
    x, y = pixels_to_native(scene, [col], [row])
    lon, lat = transform_xy(x, y, scene.crs_wkt, "EPSG:4326")
    return float(lat[0]), float(lon[0])


def ground_resolution(scene: Scene) -> float:
    """Metres per native pixel (x direction) at the scene's centre, whatever the CRS's units."""
    t = Affine(*scene.transform)
    px = math.hypot(t.a, t.d)
    crs = parse_crs(scene.crs_wkt)
    if crs.is_geographic:
        lat, _ = pixel_to_latlon(scene, scene.width / 2, scene.height / 2)
        return px * 111_320.0 * max(math.cos(math.radians(lat)), 1e-6)
    try:
        factor = float(crs.axis_info[0].unit_conversion_factor)
    except (IndexError, AttributeError, TypeError):
        factor = 1.0
    return px * (factor or 1.0)


def reproject_geometry(geom: BaseGeometry, src_crs: str | int | CRS, dst_crs: str | int | CRS) -> BaseGeometry:
    """Reproject a shapely geometry (always-xy); straight edges are densified first so they can curve."""
    if geom.is_empty or _same(src_crs, dst_crs):
        return geom
    import shapely

    minx, miny, maxx, maxy = geom.bounds
    span = max(maxx - minx, maxy - miny)
    if span > 0 and geom.geom_type in ("Polygon", "MultiPolygon", "LineString", "MultiLineString", "LinearRing"):
        geom = shapely.segmentize(geom, span / (EDGE_POINTS - 1))
    tr = transformer(src_crs, dst_crs)

    def fn(coords: np.ndarray) -> np.ndarray:
        x, y = tr.transform(coords[:, 0], coords[:, 1], errcheck=False)
        return np.column_stack([x, y])

    out = shapely.transform(geom, fn)
    bounds = np.asarray(out.bounds, dtype=float)
    if not np.all(np.isfinite(bounds)):
        raise CRSError(f"geometry cannot be expressed in {_short(dst_crs)} (it lies outside that CRS's area)",
                       "choose another output CRS")
    return out if out.is_valid else out.buffer(0)
