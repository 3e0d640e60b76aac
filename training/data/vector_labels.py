"""GeoTIFF + labelled vector layer -> instruction-formatted contrastive pairs.

The vector layer (GeoPackage, shapefile, GeoJSON; polygons or boxes; any CRS) is
reprojected to the raster's CRS and turned into native pixel coordinates. Each
feature carries a class or caption attribute. Pairs (query <-> positive document):

- ``scene_class``: text (``text_query``) <-> chip around a labelled pixel (``tile``)
- ``region_caption``: context image + feature bbox (``region_query``) <-> text (``referring_query``)
- ``region``: a box on its tile image <-> the class text, see :mod:`.region_pairs`
- ``image_image``: chip (``tile``) <-> another chip of the same class (``tile``)
- ``geo``: chip alone (``tile``) <-> its location text (``text_doc``): the query carries no
  coordinates and the document no class, so the pair cannot be solved by copying text

Chips are read and stretched with the backend's raster code (one stretch per
scene, as at indexing time), so training sees exactly what the index sees.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from affine import Affine
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from ...backend.errors import InputError, NotFoundError
from ...backend.model.presets import Preset
from ...backend.types import Box, EmbedInput, Scene, Stretch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelledFeature:
    """One vector feature in native pixel coordinates of the scene."""

    fid: int
    label: str
    geometry: BaseGeometry  # pixel coordinates (col, row)

    @property
    def centroid(self) -> tuple[float, float]:
        c = self.geometry.centroid
        return float(c.x), float(c.y)


@dataclass(frozen=True)
class LabelledPoint:
    """A pixel centre inside a feature."""

    col: float
    row: float
    label: str
    fid: int


@dataclass
class Pair:
    """One contrastive pair plus what it came from (for splits, groups and eval)."""

    query: EmbedInput
    doc: EmbedInput
    label: str
    kind: str
    point: LabelledPoint
    extra: dict[str, object] = field(default_factory=dict)


def load_features(
    path: str | Path, scene: Scene, *, label_field: str, layer: str | None = None
) -> list[LabelledFeature]:
    """Read polygons/boxes with a label attribute, reprojected to the scene's pixels."""
    import fiona  # optional dependency (the `train` extra)

    from ...backend.raster.geometry import reproject_geometry

    p = Path(path)
    if not p.exists():
        raise NotFoundError(f"vector layer not found: {p}", "pass a GeoPackage, shapefile or GeoJSON path")
    try:
        src = fiona.open(p, layer=layer) if layer else fiona.open(p)
    except Exception as e:  # fiona raises DriverError and friends
        raise InputError(f"cannot open vector layer {p}: {e}", "use a GeoPackage, shapefile or GeoJSON") from e
    with src:
        fields = list(src.schema["properties"])
        if label_field not in fields:
            raise InputError(f"attribute {label_field!r} not in {p.name}", f"choose one of {fields}")
        crs_wkt = src.crs_wkt or "EPSG:4326"  # GeoJSON without a CRS is WGS84 by definition
        inverse = ~Affine(*scene.transform)
        params = [inverse.a, inverse.b, inverse.d, inverse.e, inverse.c, inverse.f]
        out: list[LabelledFeature] = []
        for i, feat in enumerate(src):
            value = feat["properties"].get(label_field)
            if feat["geometry"] is None or value is None or str(value).strip() == "":
                continue
            geom = shape(feat["geometry"])
            if geom.geom_type not in ("Polygon", "MultiPolygon") or geom.is_empty:
                log.warning("skipping feature %s: %s is not a polygon or box", i, geom.geom_type)
                continue
            native = reproject_geometry(geom, crs_wkt, scene.crs_wkt)
            px = shapely.affinity.affine_transform(native, params)
            inside = px.intersection(shapely.box(0, 0, scene.width, scene.height))
            if inside.is_empty:
                continue
            out.append(LabelledFeature(fid=i, label=str(value).strip(), geometry=inside))
    if not out:
        raise InputError(f"no labelled polygon of {p.name} overlaps the raster", "check the layer's CRS and extent")
    return out


def feature_pixels(feature: LabelledFeature) -> np.ndarray:
    """(k, 2) pixel centres (col, row) inside the feature (its representative point if none)."""
    x0, y0, x1, y1 = feature.geometry.bounds
    cols = np.arange(np.floor(x0), np.ceil(x1)) + 0.5
    rows = np.arange(np.floor(y0), np.ceil(y1)) + 0.5
    cc, rr = np.meshgrid(cols, rows)
    inside = shapely.contains_xy(feature.geometry, cc.ravel(), rr.ravel())
    pts = np.stack([cc.ravel()[inside], rr.ravel()[inside]], axis=1)
    if len(pts) == 0:
        rp = feature.geometry.representative_point()
        pts = np.array([[rp.x, rp.y]])
    return pts


def sample_points(
    features: Sequence[LabelledFeature], per_class: int, *, seed: int = 0
) -> list[LabelledPoint]:
    """Up to ``per_class`` pixel centres per class, spread over the class's features."""
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[LabelledPoint]] = {}
    for f in features:
        for c, r in feature_pixels(f):
            by_class.setdefault(f.label, []).append(LabelledPoint(float(c), float(r), f.label, f.fid))
    out: list[LabelledPoint] = []
    for label in sorted(by_class):
        pts = by_class[label]
        take = rng.choice(len(pts), size=min(per_class, len(pts)), replace=False)
        out.extend(pts[i] for i in sorted(take))
    return out


def chip_window(point: LabelledPoint, size: int) -> tuple[int, int, int, int]:
    """A ``size`` x ``size`` window centred on the point (may cross the edge: boundless read)."""
    return (int(np.floor(point.col - size / 2)), int(np.floor(point.row - size / 2)), size, size)


class PairBuilder:
    """Reads chips and formats EmbedInputs for one scene with the preset's instructions."""

    def __init__(
        self,
        scene: Scene,
        stretch: Stretch,
        instructions: dict[str, str],
        *,
        image_size: int,
        chip_size: int = 16,
        context_size: int = 64,
        caption_template: str = "a satellite image of {label}",
        bands: tuple[int, int, int] | None = None,
    ) -> None:
        self.scene, self.stretch, self.instructions = scene, stretch, instructions
        self.image_size, self.chip_size, self.context_size = image_size, chip_size, context_size
        self.caption_template, self.bands = caption_template, bands

    def caption(self, label: str) -> str:
        return self.caption_template.format(label=label)

    def text(self, text: str) -> EmbedInput:
        return EmbedInput(instruction=self.instructions["text_query"], text=text)

    def chip(self, point: LabelledPoint) -> np.ndarray:
        from ...backend.raster.tiling import read_tile

        image, _ = read_tile(
            self.scene, chip_window(point, self.chip_size), self.stretch, out_size=self.image_size, bands=self.bands
        )
        return image

    def tile(self, point: LabelledPoint) -> EmbedInput:
        return EmbedInput(instruction=self.instructions["tile"], image=self.chip(point))

    def region(self, feature: LabelledFeature) -> EmbedInput:
        from ...backend.raster.geometry import context_window, pixel_box_to_image_box
        from ...backend.raster.tiling import read_tile

        box: Box = tuple(float(v) for v in feature.geometry.bounds)  # type: ignore[assignment]
        window = context_window(self.scene, box, self.context_size)
        image, _ = read_tile(self.scene, window, self.stretch, out_size=self.image_size, bands=self.bands)
        return EmbedInput(
            instruction=self.instructions["region_query"],
            image=image,
            bbox=pixel_box_to_image_box(box, window, self.image_size),
        )

    def latlon(self, point: LabelledPoint) -> tuple[float, float]:
        from ...backend.raster.geometry import pixel_to_latlon

        return pixel_to_latlon(self.scene, point.col, point.row)

    def pairs(
        self,
        points: Sequence[LabelledPoint],
        features: Sequence[LabelledFeature],
        kinds: Sequence[str],
        *,
        seed: int = 0,
    ) -> list[Pair]:
        """Build every requested pair kind from the given points / features."""
        rng = np.random.default_rng(seed)
        tiles = [self.tile(p) for p in points] if {"scene_class", "image_image", "geo"} & set(kinds) else []
        out: list[Pair] = []
        for kind in kinds:
            if kind == "scene_class":
                out += [Pair(self.text(self.caption(p.label)), t, p.label, kind, p) for p, t in zip(points, tiles, strict=True)]
            elif kind == "image_image":
                same: dict[str, list[int]] = {}
                for i, p in enumerate(points):
                    same.setdefault(p.label, []).append(i)
                for i, p in enumerate(points):
                    others = [j for j in same[p.label] if points[j].fid != p.fid] or [j for j in same[p.label] if j != i]
                    if others:
                        out.append(Pair(tiles[i], tiles[int(rng.choice(others))], p.label, kind, p))
            elif kind == "geo":
                for p, t in zip(points, tiles, strict=True):  # the image alone must tell where it is
                    lat, lon = self.latlon(p)
                    doc = EmbedInput(instruction=self.instructions["text_doc"], text=Preset.format_latlon(lat, lon))
                    out.append(Pair(t, doc, p.label, kind, p, {"latlon": (lat, lon)}))
            elif kind == "region_caption":
                for f in features:
                    c, r = f.centroid
                    doc = EmbedInput(self.instructions["referring_query"], text=self.caption(f.label))  # as typed at search
                    out.append(Pair(self.region(f), doc, f.label, kind, LabelledPoint(c, r, f.label, f.fid)))
            else:
                raise InputError(f"unknown pair kind {kind!r}", "use scene_class, region_caption, image_image or geo")
        return out
