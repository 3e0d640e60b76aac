"""A small labelled synthetic scene: a 3-band GeoTIFF whose classes have distinct colours,
plus the same polygons as a vector layer (GeoPackage, shapefile or GeoJSON, any CRS)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import box, mapping

CRS = "EPSG:32617"
ORIGIN = (400000.0, 3300000.0)  # UTM 17N (Florida), 10 m pixels
PIXEL = 10.0
COLOURS = {"water": (20, 40, 120), "forest": (30, 120, 40), "sand": (220, 200, 150), "urban": (150, 150, 150)}


def class_layout(size: int = 96, cell: int = 12) -> list[tuple[str, tuple[int, int, int, int]]]:
    """(label, pixel box) of square patches on a checkerboard of classes, spread over the scene."""
    labels = list(COLOURS)
    out = []
    for i, row in enumerate(range(4, size - cell, 2 * cell)):
        for j, col in enumerate(range(4, size - cell, 2 * cell)):
            out.append((labels[(i + 2 * j) % len(labels)], (col, row, col + cell, row + cell)))
    return out


def write_scene(path: Path, size: int = 96, seed: int = 0) -> Path:
    """uint16 3-band GeoTIFF: background noise + coloured class patches (stretch needed)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(300, 900, size=(3, size, size)).astype(np.uint16)
    for label, (c0, r0, c1, r1) in class_layout(size):
        colour = np.array(COLOURS[label], dtype=float)[:, None, None] * 8
        data[:, r0:r1, c0:c1] = (colour + rng.normal(0, 40, size=(3, r1 - r0, c1 - c0))).clip(0, 4000).astype(np.uint16)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint16", crs=CRS,
                       transform=from_origin(*ORIGIN, PIXEL, PIXEL)) as dst:
        dst.write(data)
    return path


def pixel_box_to_map(b: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
    c0, r0, c1, r1 = b
    return (ORIGIN[0] + c0 * PIXEL, ORIGIN[1] - r1 * PIXEL, ORIGIN[0] + c1 * PIXEL, ORIGIN[1] - r0 * PIXEL)


def write_labels(path: Path, *, size: int = 96, driver: str = "GPKG", crs: str = CRS, field: str = "label") -> Path:
    """The class patches as boxes in ``crs`` (reprojected from the raster's CRS)."""
    import fiona

    from geovec.backend.raster.geometry import reproject_geometry

    schema = {"geometry": "Polygon", "properties": {field: "str", "id": "int"}}
    with fiona.open(path, "w", driver=driver, crs=crs, schema=schema) as dst:
        for i, (label, b) in enumerate(class_layout(size)):
            geom = box(*pixel_box_to_map(b))
            if crs != CRS:
                geom = reproject_geometry(geom, CRS, crs)
            dst.write({"geometry": mapping(geom), "properties": {field: label, "id": i}})
    return path
