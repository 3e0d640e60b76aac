"""Per-scene stretch of the three model bands to 8 bits, computed once per scene.

8-bit data passes through unchanged (``identity``). Anything else (16-bit, float,
odd ranges) gets a linear percentile stretch per channel (default 2-98 %), computed
from a decimated read of at most :data:`SAMPLE_EDGE` pixels a side — GDAL serves it
from overviews when the file has them — never from a full-resolution whole-file read
and never per tile. The index stores the stretch, and queries reuse it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from ..errors import RasterError
from ..types import Scene, Stretch

log = logging.getLogger(__name__)

#: Longest edge of the decimated read used to compute percentiles.
SAMPLE_EDGE = 1024


#: A constant value on at least this share of a scene's outer edge (in all three model bands) is a fill collar.
COLLAR_EDGE_SHARE = 0.25


def _sample_bands(scene: Scene, rgb: Sequence[int]) -> dict[int, np.ma.MaskedArray]:
    """Decimated (at most :data:`SAMPLE_EDGE` a side) masked reads of the scene bands ``rgb`` (nodata/mask)."""
    import rasterio
    from rasterio.enums import Resampling

    scale = min(1.0, SAMPLE_EDGE / max(scene.width, scene.height))
    shape = (max(1, math.ceil(scene.height * scale)), max(1, math.ceil(scene.width * scale)))
    out: dict[int, np.ma.MaskedArray] = {}
    for b in dict.fromkeys(rgb):
        ref = scene.bands[b - 1]
        try:
            with rasterio.open(ref.path) as src:
                data = src.read(ref.band, out_shape=shape, resampling=Resampling.nearest, masked=True)
        except Exception as e:  # noqa: BLE001 - GDAL read errors become one clear message
            from .reasons import gdal_reason

            raise RasterError(f"cannot read band {ref.band} of {ref.path} ({gdal_reason(e)})",
                              "check that the file is not truncated") from e
        arr = np.ma.masked_invalid(data.astype(np.float64))
        out[b] = arr
    return out


def _edge(a: np.ndarray, depth: int = 0) -> np.ndarray:
    """The ring ``depth`` pixels in from the outer edge of a 2-D array (rows, then columns), as one vector.

    Rings of every depth have the same length and order, so position i of two rings is the same
    place along the edge, ``depth`` pixels apart.
    """
    h, w = a.shape
    d = depth
    return np.concatenate([a[d, :], a[h - 1 - d, :], a[:, d], a[:, w - 1 - d]])


def detect_collar(planes: Sequence[np.ndarray]) -> float | None:
    """The constant fill value of an untagged scene's collar, or None.

    ``planes`` are the three model bands (2-D, same shape, no mask). A value is fill when all three
    bands hold it on at least :data:`COLLAR_EDGE_SHARE` of the outer edge *and* a few pixels (3 %
    of the size, at least 4) further in at the same places (a collar is thick: an L1 scene's zero
    border, a rotated image's padded corners; a road or shadow along the edge is not), and it is
    the lowest or highest value of every band.
    """
    r, g, b = (np.asarray(p, dtype=np.float64) for p in planes)
    h, w = r.shape
    depth = max(4, round(0.03 * min(h, w)))
    if min(h, w) <= 2 * depth + 2:
        return None
    er, eg, eb = _edge(r), _edge(g), _edge(b)
    same = (er == eg) & (er == eb)
    if not same.any():
        return None
    values, counts = np.unique(er[same], return_counts=True)
    v = float(values[int(np.argmax(counts))])
    deep = np.logical_and.reduce([_edge(p, depth) == v for p in (r, g, b)])
    thick = same & (er == v) & deep
    if thick.sum() < COLLAR_EDGE_SHARE * er.size:
        return None
    extreme = all(v <= float(p.min()) or v >= float(p.max()) for p in (r, g, b))
    return v if extreme else None


def compute_stretch(scene: Scene, *, percentiles: Sequence[float] = (2.0, 98.0),
                    bands: Sequence[int] | None = None, nodata: float | None = None,
                    detect_fill: bool = True) -> Stretch:
    """The stretch of ``scene``'s R, G, B bands (``bands`` overrides ``scene.rgb``) and its fill.

    Fill (see :class:`~geovec.backend.types.Stretch`): ``nodata`` when given (any band holding it);
    else the file's nodata tag or mask (GDAL masks it); else, with ``detect_fill``, a constant collar
    (:func:`detect_collar`). Fill pixels are left out of the percentiles, and reads mark them invalid,
    so they count against a tile's valid fraction.
    """
    rgb = tuple(bands) if bands else scene.rgb
    p_lo, p_hi = (float(p) for p in percentiles)
    if not (0.0 <= p_lo < p_hi <= 100.0):
        raise RasterError(f"percentiles {list(percentiles)} are not 0 <= low < high <= 100",
                          "use e.g. 2 98")
    if nodata is not None and not math.isfinite(float(nodata)):
        raise RasterError(f"nodata {nodata} is not a finite number", "give e.g. --nodata 0")
    samples = _sample_bands(scene, rgb)
    planes = [samples[b] for b in rgb]
    masked = np.zeros(planes[0].shape, dtype=bool)
    for p in planes:
        masked |= np.ma.getmaskarray(p)
    fill: float | None = None
    source = "none"
    fill_px = np.zeros_like(masked)
    if nodata is not None:
        fill, source = float(nodata), "option"
        for p in planes:
            fill_px |= np.ma.getdata(p) == np.float32(fill)
    elif scene.nodata is not None:
        fill, source = float(scene.nodata), "tag"
    elif masked.any():
        source = "tag"  # a mask band / alpha: GDAL masks the fill, there is no value
    elif detect_fill:
        fill = detect_collar([np.ma.getdata(p) for p in planes])
        if fill is not None:
            source = "detected"
            fill_px = np.logical_and.reduce([np.ma.getdata(p) == np.float32(fill) for p in planes])
    bad = masked | fill_px
    fraction = round(float(bad.mean()), 6) if bad.size else None
    if fill is not None or source != "none":
        log.info("scene %s: fill %s (%s), %.1f %% of the scene", scene.name, fill, source, 100 * (fraction or 0))
    extra = {"fill": fill, "fill_source": source, "fill_fraction": fraction if source != "none" else None}
    if np.dtype(scene.dtype) == np.uint8:
        return Stretch((0.0, 0.0, 0.0), (255.0, 255.0, 255.0), "identity", **extra)  # type: ignore[arg-type]
    lows: list[float] = []
    highs: list[float] = []
    for b, plane in zip(rgb, planes, strict=True):
        values = np.ma.getdata(plane)[~bad]
        values = values[np.isfinite(values)]
        if values.size == 0:
            lo, hi = 0.0, 1.0
            log.info("scene %s band %d has no valid pixels; its tiles will be skipped", scene.name, b)
        else:
            lo, hi = (float(v) for v in np.percentile(values, [p_lo, p_hi]))
            if not hi > lo:  # a constant band: keep its value mid-grey rather than dividing by 0
                lo, hi = lo - 0.5, lo + 0.5
        lows.append(lo)
        highs.append(hi)
    return Stretch(tuple(lows), tuple(highs), "percentile", **extra)  # type: ignore[arg-type]


def fill_mask(data: np.ndarray, stretch: Stretch) -> np.ndarray | None:
    """(h, w) True where ``data`` (3, h, w) is the fill ``stretch`` names and reads must mask; else None."""
    if not stretch.masks_fill:
        return None
    eq = data == np.float32(stretch.fill)  # type: ignore[arg-type]
    return eq.any(axis=0) if stretch.fill_source == "option" else eq.all(axis=0)


def apply_stretch(data: np.ndarray, valid: np.ndarray, stretch: Stretch) -> np.ndarray:
    """(3, h, w) values + (h, w) validity -> (h, w, 3) uint8; invalid pixels are black."""
    low = np.asarray(stretch.low, dtype=np.float32)[:, None, None]
    high = np.asarray(stretch.high, dtype=np.float32)[:, None, None]
    if stretch.method == "identity":
        scaled = np.clip(data, 0, 255)
    else:
        scaled = (data.astype(np.float32, copy=False) - low) * (255.0 / np.maximum(high - low, 1e-12))
        scaled = np.clip(scaled, 0, 255)
    scaled = np.where(valid[None, :, :] & np.isfinite(scaled), scaled, 0)
    return np.ascontiguousarray(np.rint(scaled).astype(np.uint8).transpose(1, 2, 0))
