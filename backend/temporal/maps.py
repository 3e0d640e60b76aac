"""Per-tile values painted on a scene's grid: a styled single-band GeoTIFF with a legend.

The raster keeps the scene's CRS and extent; its pixels are the scene's, coarsened by a whole
factor so that no side exceeds :data:`MAX_SIDE` (a tile of 256 px stays many pixels wide).
Each tile paints its window with its value; where tiles overlap, the larger value wins
(a change or a match is never hidden by a neighbour). Pixels no tile covers are nodata (NaN).

The legend travels twice: a QGIS style sidecar (``NAME.qml``, a pseudocolour ramp with labelled
stops that QGIS applies when the raster is loaded) and GDAL metadata on the band
(``LEGEND``, ``UNITS``, ``DESCRIPTION``) that any GDAL reader shows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from ..paths import output_file
from ..types import Scene, Window

log = logging.getLogger(__name__)

MAX_SIDE = 2048
#: Colour ramps: (position in [0, 1], hex colour).
RAMPS: dict[str, list[tuple[float, str]]] = {
    "change": [(0.0, "#2b83ba"), (0.25, "#abdda4"), (0.5, "#ffffbf"), (0.75, "#fdae61"), (1.0, "#d7191c")],
    "score": [(0.0, "#0d0887"), (0.25, "#7e03a8"), (0.5, "#cc4778"), (0.75, "#f89540"), (1.0, "#f0f921")],
    "diverging": [(0.0, "#2166ac"), (0.5, "#f7f7f7"), (1.0, "#b2182b")],
}


@dataclass(frozen=True)
class Legend:
    """What the raster's values mean and how they are coloured."""

    title: str  # e.g. "change (1 - cosine)"
    low: float  # value at the ramp's first colour
    high: float  # value at the ramp's last colour
    ramp: str = "change"
    low_label: str = "low"
    high_label: str = "high"

    def stops(self) -> list[tuple[float, str, str]]:
        """(value, colour, label) of each ramp stop."""
        out = []
        ramp = RAMPS[self.ramp]
        for i, (pos, colour) in enumerate(ramp):
            v = self.low + pos * (self.high - self.low)
            label = f"{v:.3g}"
            if i == 0:
                label += f" {self.low_label}"
            elif i == len(ramp) - 1:
                label += f" {self.high_label}"
            out.append((v, colour, label))
        return out

    def text(self) -> str:
        return f"{self.title}: " + ", ".join(f"{lab} = {c}" for _, c, lab in self.stops())


def coarsening(scene: Scene, max_side: int = MAX_SIDE) -> int:
    """The whole factor by which the scene's pixels are coarsened so no side exceeds ``max_side``."""
    return max(1, math.ceil(max(scene.width, scene.height) / max_side))


def paint(scene: Scene, windows: Sequence[Window], values: Sequence[float], *, factor: int | None = None
          ) -> tuple[np.ndarray, int]:
    """A float32 (H, W) array on the scene's grid coarsened by ``factor``; NaN where no tile paints."""
    f = factor or coarsening(scene)
    h, w = math.ceil(scene.height / f), math.ceil(scene.width / f)
    out = np.full((h, w), np.nan, dtype=np.float32)
    for (c0, r0, cw, rh), v in zip(windows, values, strict=True):
        if not math.isfinite(float(v)):
            continue
        x0, y0 = max(0, c0 // f), max(0, r0 // f)
        x1, y1 = min(w, max(x0 + 1, math.ceil((c0 + cw) / f))), min(h, max(y0 + 1, math.ceil((r0 + rh) / f)))
        if x1 <= x0 or y1 <= y0:
            continue
        block = out[y0:y1, x0:x1]
        np.fmax(block, np.float32(v), out=block)
    return out, f


def write_map(path: str | Path, scene: Scene, windows: Sequence[Window], values: Sequence[float],
              legend: Legend, *, description: str = "") -> Path:
    """Write a styled map of per-tile ``values`` at their ``windows`` of ``scene`` (GeoTIFF + ``.qml``)."""
    import rasterio
    from affine import Affine

    out = Path(path)
    arr, f = paint(scene, windows, values)
    a, b, c, d, e, ff = scene.transform
    transform = Affine(a, b, c, d, e, ff) @ Affine.scale(f, f)
    profile = {"driver": "GTiff", "width": arr.shape[1], "height": arr.shape[0], "count": 1, "dtype": "float32",
               "crs": scene.crs_wkt, "transform": transform, "nodata": float("nan"), "compress": "deflate",
               "tiled": arr.shape[0] >= 256 and arr.shape[1] >= 256}
    with output_file(out, "map") as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(arr, 1)
        dst.set_band_description(1, legend.title)
        dst.update_tags(1, LEGEND=legend.text(), UNITS=legend.title)
        dst.update_tags(DESCRIPTION=description or legend.title, SCENE=scene.name, COARSENING=str(f))
    write_qml(out.with_suffix(".qml"), legend)
    log.info("wrote %s (%dx%d, 1:%d of %s)", out, arr.shape[1], arr.shape[0], f, scene.name)
    return out


def write_qml(path: str | Path, legend: Legend) -> Path:
    """A QGIS raster style: single-band pseudocolour, interpolated ramp, one labelled item per stop."""
    items = "\n".join(f"            <item alpha=\"255\" value=\"{v:.6g}\" color=\"{c}\" label={quoteattr(lab)}/>"
                      for v, c, lab in legend.stops())
    qml = f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22" styleCategories="AllStyleCategories">
  <pipe>
    <rasterrenderer type="singlebandpseudocolor" band="1" opacity="0.8" alphaBand="-1"
                    classificationMin="{legend.low:.6g}" classificationMax="{legend.high:.6g}">
      <rastershader>
        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="0"
                         minimumValue="{legend.low:.6g}" maximumValue="{legend.high:.6g}">
{items}
        </colorrampshader>
      </rastershader>
    </rasterrenderer>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
"""
    p = Path(path)
    with output_file(p, "map legend") as tmp:
        tmp.write_text(qml, encoding="utf-8")
    return p


def safe_name(text: str, limit: int = 60) -> str:
    """``text`` as a file-name part (letters, digits, ``-_.``)."""
    s = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text).strip("._")
    return (s or "scene")[:limit]
