"""Region candidates inside a tile image, and non-maximum suppression.

Every box here is in tile-image pixels ``(x1, y1, x2, y2)`` (the image the model
sees, ``tile_size`` x ``tile_size``). Candidates come from

* a multi-scale grid (:func:`grid_boxes`), configured by a SPEC string such as
  ``grid=1,2,3,4;overlap=0.25;max=64`` (:class:`RegionSpec`);
* optionally a vector layer (``layer=PATH`` in the spec, any CRS, read with fiona;
  :class:`LayerBoxes`), each feature's bounds clipped to the tile;
* the ground size of a drawn box (:func:`scale_boxes`): boxes of that size sliding
  over a tile, so a 20 m box is compared with 20 m candidates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError, NotFoundError
from .types import Box, Scene, Window

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

DEFAULT_SPEC = "grid=1,2,3,4;overlap=0.25"
#: Most candidates a spec may produce per tile (the largest ``max=`` allowed).
HARD_CAP = 256
DEFAULT_CAP = 64
_SPEC_HINT = ("write the spec as key=value pairs separated by ';', e.g. 'grid=1,2,3,4;overlap=0.25;max=64' "
              "(keys: grid, overlap, max, min, layer)")


@dataclass(frozen=True)
class RegionSpec:
    """How region candidates are made for each indexed tile.

    Attributes:
        grids: grid orders (``n`` gives n x n boxes), each in 1..16.
        overlap: fraction of a cell shared with its neighbour, in [0, 0.9].
        max_candidates: cap on candidates per tile; a spec producing more is refused.
        min_size: smallest box edge in tile-image pixels (smaller layer boxes are dropped).
        layer: a vector file whose features' bounds are added as candidates.
    """

    grids: tuple[int, ...] = (1, 2, 3, 4)
    overlap: float = 0.25
    max_candidates: int = DEFAULT_CAP
    min_size: float = 4.0
    layer: str | None = None

    @classmethod
    def parse(cls, text: str | None) -> RegionSpec:
        """Parse a SPEC string (None or '' -> the default); InputError naming the bad part."""
        if text is None or not str(text).strip():
            return cls.parse(DEFAULT_SPEC)
        fields: dict[str, Any] = {}
        for part in str(text).split(";"):
            part = part.strip()
            if not part:
                continue
            key, sep, value = part.partition("=")
            key, value = key.strip().lower(), value.strip()
            if not sep or not value:
                raise InputError(f"region spec part {part!r} is not key=value", _SPEC_HINT)
            try:
                if key == "grid":
                    grids = tuple(int(v) for v in value.split(",") if v.strip())
                    if not grids or any(not 1 <= g <= 16 for g in grids):
                        raise ValueError
                    fields["grids"] = tuple(sorted(set(grids)))
                elif key == "overlap":
                    fields["overlap"] = float(value)
                    if not 0.0 <= fields["overlap"] <= 0.9:
                        raise ValueError
                elif key == "max":
                    fields["max_candidates"] = int(value)
                    if not 1 <= fields["max_candidates"] <= HARD_CAP:
                        raise ValueError
                elif key == "min":
                    fields["min_size"] = float(value)
                    if not (math.isfinite(fields["min_size"]) and fields["min_size"] >= 1):
                        raise ValueError
                elif key == "layer":
                    fields["layer"] = str(Path(value).expanduser().resolve())
                else:
                    raise InputError(f"unknown region spec key {key!r} in {text!r}", _SPEC_HINT)
            except ValueError as e:
                if isinstance(e, InputError):
                    raise
                allowed = {"grid": "comma-separated integers in 1..16", "overlap": "a number in 0..0.9",
                           "max": f"an integer in 1..{HARD_CAP}", "min": "a number >= 1"}[key]
                raise InputError(f"region spec {key}={value!r} is not {allowed}", _SPEC_HINT) from None
        spec = cls(**fields)
        n = spec.grid_count()
        if n > spec.max_candidates:
            raise InputError(f"region spec {text!r} gives {n} grid candidates per tile, past the cap of "
                             f"{spec.max_candidates}", f"use fewer or smaller grids, or raise max= (up to {HARD_CAP})")
        if spec.layer is not None and not Path(spec.layer).exists():
            raise NotFoundError(f"region layer {spec.layer!r} does not exist", "give an existing vector file")
        return spec

    def grid_count(self) -> int:
        return sum(g * g for g in self.grids)

    def to_text(self) -> str:
        """The canonical SPEC string (stored in the index sidecar: part of the index's identity)."""
        parts = [f"grid={','.join(str(g) for g in self.grids)}", f"overlap={self.overlap:g}",
                 f"max={self.max_candidates}", f"min={self.min_size:g}"]
        if self.layer:
            parts.append(f"layer={self.layer}")
        return ";".join(parts)


def grid_boxes(size: int, spec: RegionSpec) -> list[Box]:
    """The multi-scale grid candidates of a ``size`` x ``size`` tile image (coarsest first)."""
    out: list[Box] = []
    for n in spec.grids:
        if n == 1:
            out.append((0.0, 0.0, float(size), float(size)))
            continue
        cell = size / (n - (n - 1) * spec.overlap)
        stride = cell * (1.0 - spec.overlap)
        for r in range(n):
            for c in range(n):
                x1, y1 = c * stride, r * stride
                out.append((round(x1, 3), round(y1, 3), round(min(x1 + cell, size), 3),
                            round(min(y1 + cell, size), 3)))
    return out


def tile_candidates(size: int, spec: RegionSpec, *, layer_boxes: Sequence[Box] = ()) -> list[Box]:
    """Grid candidates plus ``layer_boxes`` (deduplicated), capped at ``spec.max_candidates``.

    Layer boxes past the cap are dropped (largest kept first); grid boxes never exceed it
    (the spec is refused at parse time).
    """
    boxes = grid_boxes(size, spec)
    room = spec.max_candidates - len(boxes)
    extra = [b for b in layer_boxes if min(b[2] - b[0], b[3] - b[1]) >= spec.min_size]
    extra.sort(key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))
    seen = set(boxes)
    for b in extra:
        if room <= 0:
            break
        if b not in seen:
            boxes.append(b)
            seen.add(b)
            room -= 1
    return boxes


def check_box(box: Sequence[float]) -> Box:
    """A finite box of positive area (InputError otherwise)."""
    if len(box) != 4 or not all(math.isfinite(float(v)) for v in box):
        raise InputError(f"box {list(box)} is not 4 finite numbers", "give x1 y1 x2 y2")
    x1, y1, x2, y2 = (float(v) for v in box)
    if not (x2 > x1 and y2 > y1):
        raise InputError(f"box {list(box)} has zero area (need x1 < x2 and y1 < y2)",
                         "draw a box with a width and a height")
    return (x1, y1, x2, y2)


def scale_boxes(size: int, box_w: float, box_h: float, *, stride: float = 0.5, cap: int = DEFAULT_CAP) -> list[Box]:
    """Boxes of ``box_w`` x ``box_h`` tile-image pixels sliding over a ``size`` tile (part of a drawn-box query).

    The stride is ``stride`` x the box size, widened until at most ``cap`` boxes fit; a box
    larger than the tile is clamped to the whole tile. The last row/column is aligned to the edge.
    """
    check_box((0, 0, box_w, box_h))
    if cap < 1:
        raise InputError(f"cap={cap} must be >= 1", "ask for at least one candidate")
    w, h = min(float(box_w), float(size)), min(float(box_h), float(size))
    frac = stride
    while True:
        xs = _starts(size, w, max(w * frac, 1.0))
        ys = _starts(size, h, max(h * frac, 1.0))
        if len(xs) * len(ys) <= cap:
            break
        frac *= 1.25
    return [(round(x, 3), round(y, 3), round(x + w, 3), round(y + h, 3)) for y in ys for x in xs]


def _starts(size: float, length: float, step: float) -> list[float]:
    if length >= size:
        return [0.0]
    n = int(math.floor((size - length) / step)) + 1
    starts = [i * step for i in range(n)]
    if starts[-1] + length < size - 1e-6:
        starts.append(size - length)
    return starts


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def nms(boxes: Sequence[Sequence[float]], scores: Sequence[float], *, iou_threshold: float = 0.5,
        limit: int | None = None) -> list[int]:
    """Greedy non-maximum suppression: indices of kept boxes, best score first.

    A box is dropped when its IoU with a kept, better-scoring box exceeds ``iou_threshold``.
    """
    if len(boxes) != len(scores):
        raise InputError(f"{len(boxes)} boxes but {len(scores)} scores", "give one score per box")
    if not 0.0 <= iou_threshold <= 1.0:
        raise InputError(f"iou_threshold={iou_threshold} is not in 0..1", "use e.g. 0.5")
    if len(boxes) <= 1:
        return list(range(len(boxes)))
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")  # ties keep input order
    b = np.asarray(boxes, dtype=np.float64).reshape(len(boxes), 4)[order]
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    alive = np.ones(len(b), dtype=bool)
    keep: list[int] = []
    for p in range(len(b)):  # one vectorised step per kept box against the lower-scoring ones
        if not alive[p]:
            continue
        keep.append(int(order[p]))
        if limit is not None and len(keep) >= limit:
            break
        rest = b[p + 1:]
        iw = np.minimum(b[p, 2], rest[:, 2]) - np.maximum(b[p, 0], rest[:, 0])
        ih = np.minimum(b[p, 3], rest[:, 3]) - np.maximum(b[p, 1], rest[:, 1])
        inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
        union = area[p] + area[p + 1:] - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            overlap = np.where(union > 0, inter / union, 0.0)
        alive[p + 1:] &= overlap <= iou_threshold
    return keep


class LayerBoxes:
    """Features of a vector layer (any CRS) as candidate boxes on tiles, read once with fiona."""

    def __init__(self, path: str | Path) -> None:
        import fiona
        from shapely.geometry import shape

        from .paths import check_read

        self.path = str(check_read(path, "region layer"))  # a job of the server: under its allowed folders
        try:
            with fiona.open(self.path) as src:
                self.crs_wkt = src.crs_wkt or "EPSG:4326"
                self.geoms = [shape(f["geometry"]) for f in src if f["geometry"] is not None]
        except Exception as e:  # noqa: BLE001 - fiona raises many types
            raise InputError(f"region layer {self.path!r} cannot be read: {e}",
                             "give a vector file fiona reads (GeoPackage, shapefile, GeoJSON)") from e
        self._by_crs: dict[str, Any] = {}

    def _tree(self, crs_wkt: str) -> tuple[Any, list[BaseGeometry]]:
        if crs_wkt not in self._by_crs:
            from shapely import STRtree

            from .raster import geometry

            geoms = [geometry.reproject_geometry(g, self.crs_wkt, crs_wkt) for g in self.geoms]
            self._by_crs[crs_wkt] = (STRtree(geoms), geoms)
        return self._by_crs[crs_wkt]

    def boxes(self, scene: Scene, window: Window, out_size: int) -> list[Box]:
        """Bounds of the features meeting ``window``, in tile-image pixels, clipped to the tile."""
        from shapely.geometry import box as sbox

        from .raster import geometry

        tree, geoms = self._tree(scene.crs_wkt)
        col, row, w, h = window
        bounds = geometry.window_bounds(scene, window)
        out: list[Box] = []
        for i in tree.query(sbox(*bounds)):
            gx1, gy1, gx2, gy2 = geoms[int(i)].bounds
            xs, ys = np.array([gx1, gx2, gx1, gx2]), np.array([gy1, gy1, gy2, gy2])
            cols, rows = geometry.to_pixels(scene, xs, ys, scene.crs_wkt)
            sx, sy = out_size / w, out_size / h
            x1 = max(0.0, (float(np.min(cols)) - col) * sx)
            y1 = max(0.0, (float(np.min(rows)) - row) * sy)
            x2 = min(float(out_size), (float(np.max(cols)) - col) * sx)
            y2 = min(float(out_size), (float(np.max(rows)) - row) * sy)
            if x2 > x1 and y2 > y1:
                out.append((round(x1, 3), round(y1, 3), round(x2, 3), round(y2, 3)))
        return out
