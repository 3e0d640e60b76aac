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


def _sample_band(path: str, band: int, scene: Scene) -> np.ndarray:
    """Valid, finite values of one band from a decimated read (nodata/mask respected)."""
    import rasterio
    from rasterio.enums import Resampling

    scale = min(1.0, SAMPLE_EDGE / max(scene.width, scene.height))
    shape = (max(1, math.ceil(scene.height * scale)), max(1, math.ceil(scene.width * scale)))
    try:
        with rasterio.open(path) as src:
            data = src.read(band, out_shape=shape, resampling=Resampling.nearest, masked=True)
    except Exception as e:  # noqa: BLE001 - GDAL read errors become one clear message
        from .reasons import gdal_reason

        raise RasterError(f"cannot read band {band} of {path} ({gdal_reason(e)})",
                          "check that the file is not truncated") from e
    values = np.ma.compressed(data).astype(np.float64, copy=False)
    return values[np.isfinite(values)]


def compute_stretch(scene: Scene, *, percentiles: Sequence[float] = (2.0, 98.0),
                    bands: Sequence[int] | None = None) -> Stretch:
    """The stretch of ``scene``'s R, G, B bands (``bands`` overrides ``scene.rgb``)."""
    rgb = tuple(bands) if bands else scene.rgb
    if np.dtype(scene.dtype) == np.uint8:
        return Stretch((0.0, 0.0, 0.0), (255.0, 255.0, 255.0), "identity")
    p_lo, p_hi = (float(p) for p in percentiles)
    if not (0.0 <= p_lo < p_hi <= 100.0):
        raise RasterError(f"percentiles {list(percentiles)} are not 0 <= low < high <= 100",
                          "use e.g. 2 98")
    lows: list[float] = []
    highs: list[float] = []
    cache: dict[int, tuple[float, float]] = {}
    for b in rgb:
        if b not in cache:
            ref = scene.bands[b - 1]
            values = _sample_band(ref.path, ref.band, scene)
            if values.size == 0:
                cache[b] = (0.0, 1.0)
                log.info("scene %s band %d has no valid pixels; its tiles will be skipped", scene.name, b)
            else:
                lo, hi = np.percentile(values, [p_lo, p_hi])
                if not hi > lo:  # a constant band: keep its value mid-grey rather than dividing by 0
                    lo, hi = float(lo) - 0.5, float(lo) + 0.5
                cache[b] = (float(lo), float(hi))
        lows.append(cache[b][0])
        highs.append(cache[b][1])
    return Stretch(tuple(lows), tuple(highs), "percentile")  # type: ignore[arg-type]


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
