"""A two-class synthetic scene for the workflow tests: water on the left half, town on the right."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from geovec.backend.demo import pattern, write_geotiff

SIZE_W, SIZE_H, TILE, RES = 128, 64, 16, 10.0
ORIGIN = (400000.0, 3300000.0)  # UTM 17N, upper-left corner
CRS = "EPSG:32617"


def write_two_class_scene(folder: Path, edge: int = SIZE_W // 2) -> Path:
    """``folder/two.tif``: 128 x 64 px at 10 m; columns < ``edge`` (64) water, >= ``edge`` urban."""
    rgb = np.concatenate([pattern("water", SIZE_H, edge, seed=1),
                          pattern("urban", SIZE_H, SIZE_W - edge, seed=2)], axis=2)
    return write_geotiff(folder / "two.tif", (rgb * 255).astype("uint8"), crs=CRS, origin=ORIGIN, res=RES)


def tile_box(col: int, row: int, *, shrink: float = 2.0) -> list[float]:
    """Native-CRS box inside tile (col, row) of the grid (xmin, ymin, xmax, ymax)."""
    x0 = ORIGIN[0] + col * TILE * RES + shrink
    y1 = ORIGIN[1] - row * TILE * RES - shrink
    return [x0, y1 - TILE * RES + 2 * shrink, x0 + TILE * RES - 2 * shrink, y1]


def label_layer(path: Path, cells: list[tuple[int, int, str]], *, crs: str = CRS, points: bool = False) -> Path:
    """A GeoJSON of polygons (or points at the centres) over tiles, field ``label``, in ``crs``."""
    from pyproj import Transformer

    tr = Transformer.from_crs(CRS, crs, always_xy=True)
    feats = []
    for i, (c, r, lab) in enumerate(cells):
        x0, y0, x1, y1 = tile_box(c, r)
        if points:
            x, y = tr.transform((x0 + x1) / 2, (y0 + y1) / 2)
            geom = {"type": "Point", "coordinates": [x, y]}
        else:
            ring = [tr.transform(x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))]
            geom = {"type": "Polygon", "coordinates": [[list(p) for p in ring]]}
        feats.append({"type": "Feature", "id": i, "geometry": geom, "properties": {"label": lab}})
    body: dict = {"type": "FeatureCollection", "features": feats}
    if crs != "EPSG:4326":
        body["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(body))
    return path


#: Labelled cells spread over the scene: (col, row, label); the grid is 8 x 4 tiles.
CELLS = [(0, 0, "water"), (1, 2, "water"), (2, 1, "water"), (3, 3, "water"), (0, 3, "water"),
         (4, 0, "urban"), (5, 2, "urban"), (6, 1, "urban"), (7, 3, "urban"), (7, 0, "urban")]
