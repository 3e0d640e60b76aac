"""An L1-style scene built from real imagery: 16-bit, rotated in a zero collar, no nodata tag.

Landsat / Sentinel L1 products are north-up grids around a rotated image footprint; the
corners outside it are 0 and the files carry no nodata tag. This writes such a scene from
the real Olinda Landsat 7 scene in ``../shared/data`` (DN scaled to 16 bits, never 0 inside).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ANGLE_DEG = 13.0
PAD = 8  # extra zero pixels around the rotated image


def l1_source(shared: Path) -> Path:
    """The real scene the L1-style scene is built from."""
    return shared / "olinda_landsat7" / "L7_ETMs.tif"


def write_l1_scene(shared: Path, out: Path) -> tuple[Path, np.ndarray]:
    """``out`` (a GeoTIFF) and its (h, w) fill mask (True where the collar is)."""
    import rasterio
    from rasterio.transform import Affine

    with rasterio.open(l1_source(shared)) as src:
        img = src.read().astype(np.uint16) * 40 + 1000  # (6, h, w), DN >= 1000: 0 only in the collar
        t, crs = src.transform, src.crs
    _, h, w = img.shape
    a = np.deg2rad(ANGLE_DEG)
    cos, sin = np.cos(a), np.sin(a)
    oh = int(np.ceil(h * cos + w * sin)) + 2 * PAD
    ow = int(np.ceil(w * cos + h * sin)) + 2 * PAD
    yy, xx = np.mgrid[0:oh, 0:ow].astype(np.float64)
    yc, xc = yy - (oh - 1) / 2, xx - (ow - 1) / 2  # output pixel -> source pixel (inverse rotation, nearest)
    sx = np.rint(cos * xc + sin * yc + (w - 1) / 2).astype(int)
    sy = np.rint(-sin * xc + cos * yc + (h - 1) / 2).astype(int)
    inside = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
    out_img = np.zeros((img.shape[0], oh, ow), dtype=np.uint16)
    out_img[:, inside] = img[:, sy[inside], sx[inside]]
    origin_x = t.c - (ow - w) / 2 * t.a
    origin_y = t.f + (oh - h) / 2 * abs(t.e)
    transform = Affine(t.a, 0.0, origin_x, 0.0, t.e, origin_y)
    with rasterio.open(out, "w", driver="GTiff", width=ow, height=oh, count=img.shape[0], dtype="uint16",
                       crs=crs, transform=transform) as dst:  # no nodata tag, as L1 products ship
        dst.write(out_img)
    return out, ~inside
