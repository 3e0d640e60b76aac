"""A per-tile class decision (class, score, margin) and what is written from it.

Zero-shot and few-shot classification both end in a :class:`Labelling`: every
tile's scores over the classes. From it come the tile polygons (GeoJSON
features), one class-map GeoTIFF per scene on the scene's own grid, and the
response. Where tiles (or regions) overlap, the pixel takes the class of the one that
scored highest.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..paths import NO_SPACE, make_folder, output_file, write_error
from ..schemas_workflows import ClassifyResponse, ClassMap, CrossValidation

if TYPE_CHECKING:
    from ..index.store import IndexStore
    from .tiles import TileTable

log = logging.getLogger(__name__)

def check_classes(classes: list[str]) -> list[str]:
    """The class names, stripped; InputError for none, one, blank or duplicate names."""
    names = [str(c).strip() for c in classes]
    if not names:
        raise InputError("the class list is empty", "give at least two class names, e.g. water forest urban")
    if any(not n for n in names):
        raise InputError(f"class list {classes} has a blank name", "give every class a name")
    if len(names) == 1:
        raise InputError(f"only one class given ({names[0]!r}): every tile would get it",
                         "give at least two classes (add e.g. 'other')")
    seen: Counter[str] = Counter(n.casefold() for n in names)
    dup = sorted({n for n in names if seen[n.casefold()] > 1})
    if dup:
        raise InputError(f"duplicate class name(s) {dup}", "give each class once (names are compared ignoring case)")
    if len(names) > 250:
        raise InputError(f"{len(names)} classes given; class maps hold at most 250", "merge classes")
    return names


@dataclass
class Labelling:
    """Scores (n tiles x n classes) and the decision taken from them."""

    table: TileTable
    classes: list[str]
    scores: np.ndarray

    #: What one item is ("tile" here; "region" in :class:`.region_level.RegionLabelling`).
    level = "tile"
    #: Name of the written polygon layer (``<layer_name>.geojson``).
    layer_name = "tiles"

    def __post_init__(self) -> None:
        order = np.argsort(-self.scores, axis=1)
        rows = np.arange(len(self.scores))
        self.best = order[:, 0] if len(self.scores) else np.zeros(0, dtype=int)
        self.score = self.scores[rows, self.best] if len(self.scores) else np.zeros(0)
        self.margin = (self.score - self.scores[rows, order[:, 1]]) if len(self.scores) else np.zeros(0)

    def tile_count(self) -> int:
        return len(self.table)

    def pixel_box(self, i: int) -> tuple[int, int, int, int]:
        """Item ``i`` in its scene's pixels: (col0, row0, col1, row1)."""
        c, r, w, h = self.table.records[i].window
        return c, r, c + w, r + h

    def counts(self) -> dict[str, int]:
        got = Counter(self.best.tolist())
        return {c: int(got.get(i, 0)) for i, c in enumerate(self.classes)}

    def features(self, out_crs: str) -> list[dict[str, Any]]:
        """One GeoJSON Feature per tile (footprint in ``out_crs``)."""
        from shapely.geometry import box, mapping

        from ..raster import geometry

        out = []
        for i, rec in enumerate(self.table.records):
            geom = geometry.reproject_geometry(box(*rec.bounds), rec.crs_wkt, out_crs)
            out.append({"type": "Feature", "geometry": mapping(geom), "properties": {
                "class": self.classes[int(self.best[i])], "class_id": int(self.best[i]) + 1,
                "score": round(float(self.score[i]), 6), "margin": round(float(self.margin[i]), 6),
                "tile_id": rec.tile_id, "scene_id": rec.scene_id, "window": list(rec.window)}})
        return out

    def write_class_maps(self, store: IndexStore, out_dir: Path) -> list[ClassMap]:
        """One uint8 GeoTIFF per scene on its native grid: 0 = not classified, i = classes[i-1]."""
        import rasterio
        from rasterio.transform import Affine

        from ..writers import write_class_colours, write_class_sidecars

        out_dir = make_folder(out_dir)
        by_scene: dict[str, list[int]] = {}
        for i, rec in enumerate(self.table.records):
            by_scene.setdefault(rec.scene_id, []).append(i)
        maps = []
        for scene_id, rows in by_scene.items():
            got = store.scene(scene_id)
            if got is None:
                continue
            scene, stretch = got
            arr = np.zeros((scene.height, scene.width), dtype=np.uint8)
            for i in sorted(rows, key=lambda j: float(self.score[j])):  # the best-scoring item wins overlaps
                c, r, ce, re_ = self.pixel_box(i)
                c0, r0 = max(0, c), max(0, r)
                c1, r1 = min(scene.width, ce), min(scene.height, re_)
                if c1 > c0 and r1 > r0:
                    arr[r0:r1, c0:c1] = int(self.best[i]) + 1
            _unpaint_fill(arr, scene, stretch, [self.pixel_box(i) for i in rows
                                                if self.table.records[i].valid_fraction < 1.0])
            path = out_dir / f"classmap_{_safe(scene.name)}_{scene_id[:8]}.tif"
            profile = {"driver": "GTiff", "width": scene.width, "height": scene.height, "count": 1,
                       "dtype": "uint8", "nodata": 0, "crs": rasterio.crs.CRS.from_wkt(scene.crs_wkt),
                       "transform": Affine(*scene.transform), "compress": "deflate", "tiled": scene.width >= 256
                       and scene.height >= 256}
            try:
                with output_file(path, "class map") as tmp, rasterio.open(tmp, "w", **profile) as dst:
                    dst.write(arr, 1)
                    write_class_colours(dst, self.classes)
            except rasterio.errors.RasterioError as e:
                full = any(os.strerror(n) in str(e) for n in NO_SPACE)
                raise write_error(OSError(errno.ENOSPC if full else errno.EIO, str(e)), path,
                                  "class map") from e
            write_class_sidecars(path, self.classes)  # the legend: .qml for QGIS, category names for GDAL
            maps.append(ClassMap(scene_id=scene_id, scene=scene.name, path=str(path)))
        return maps


def _unpaint_fill(arr: np.ndarray, scene: Any, stretch: Any, boxes: list[tuple[int, int, int, int]]) -> None:
    """Set the class map to 0 (not classified) where a partly-fill item's pixels are fill or nodata, not imagery.

    Only items whose tile was not all imagery (``valid_fraction`` < 1) are read back, at native resolution.
    """
    from ..raster.tiling import valid_mask

    for c0, r0, c1, r1 in boxes:
        c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, scene.width), min(r1, scene.height)
        if c1 > c0 and r1 > r0:
            ok = valid_mask(scene, (c0, r0, c1, r1), stretch)
            arr[r0:r1, c0:c1][~ok] = 0


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60] or "scene"


def respond(store: IndexStore, lab: Labelling, *, out_dir: str | None, out_crs: str, return_features: bool,
            cv: CrossValidation | None, took_ms: float) -> ClassifyResponse:
    """Write the maps (and tiles.geojson) when asked and build the response."""
    from ..raster import geometry
    from ..writers import write_geojson

    geometry.parse_crs(out_crs)
    features = lab.features(out_crs) if (return_features or out_dir) else []
    maps: list[ClassMap] = []
    geojson_path = None
    if out_dir:
        folder = Path(out_dir).expanduser()
        maps = lab.write_class_maps(store, folder)
        gj = folder / f"{lab.layer_name}.geojson"
        write_geojson(gj, {"type": "FeatureCollection", "features": features}, out_crs, what="tiles layer")
        geojson_path = str(gj)
    return ClassifyResponse(features=features if return_features else [], crs=out_crs,  # type: ignore[arg-type]
                            classes=lab.classes, counts=lab.counts(), tiles=lab.tile_count(), class_maps=maps,
                            level=lab.level, regions=len(lab.table) if lab.level == "region" else 0,
                            geojson_path=geojson_path, cv=cv, took_ms=round(took_ms, 2))
