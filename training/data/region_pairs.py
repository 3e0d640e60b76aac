"""Region pairs: a box on its tile image (``region_query``) <-> a referring text (``referring_query``).

Built from labelled boxes or polygons: the features of ``data.labels`` (a vector layer in
any CRS, see :mod:`.vector_labels`) or a CSV of boxes in the raster's pixels
(``xmin,ymin,xmax,ymax,label``, as NEON's crown annotations; an ``image_path`` column keeps
the rows of this raster only).

Each pair has the form the index and the search use: the query is what
``Embedder.region_inputs`` makes (tile image + the box in the checkpoint's bbox tokens +
the ``region_query`` instruction), the document the class text with the
``referring_query`` instruction, which is how a typed referring expression searches
region vectors. The loss is symmetric by default, so both directions are trained.

For every training feature, ``tiles_per_feature`` square windows of ``tile_size`` native
pixels (the index's ``--tile-size``) are placed at random so that they hold the feature;
a window that touches a held-out feature or its split block (plus ``buffer``) is refused,
so no pixel of the held-out area is ever seen in training. On each window the boxes are the candidate grid of the
index (``grid``, ``overlap``) plus the bounds of the features in it, and each box is
labelled from the features:

- ``match: cover``: the class covering at least ``min_match`` of the box's area (land
  cover polygons);
- ``match: iou``: the class of a feature box with IoU >= ``min_match`` (objects, e.g. tree
  crowns);
- with ``background`` set, the other boxes pair with that text (e.g. "background") when
  they match no feature by more than ``max_background`` (``cover``: the share of the box
  the features cover; ``iou``: the best IoU with a feature box, so boxes holding several
  objects, or a part of one, are background too), so that a class query learns to rank
  its boxes above the rest of the scene.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import box as shapely_box

from ...backend.errors import InputError, NotFoundError
from ...backend.types import Box, EmbedInput, Scene
from ..config import RegionsConfig
from .vector_labels import LabelledFeature, LabelledPoint, Pair, PairBuilder

log = logging.getLogger(__name__)

KIND = "region"


def load_box_csv(path: str | Path, scene: Scene) -> list[LabelledFeature]:
    """Boxes in the scene's pixel coordinates from a CSV (``xmin,ymin,xmax,ymax,label``)."""
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"box table not found: {p}", "pass a CSV with columns xmin,ymin,xmax,ymax,label")
    names = {Path(s).name for s in scene.sources}
    out: list[LabelledFeature] = []
    with p.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"xmin", "ymin", "xmax", "ymax", "label"} - set(reader.fieldnames or [])
        if missing:
            raise InputError(f"{p.name} lacks column(s) {sorted(missing)}",
                             f"columns found: {reader.fieldnames}; need xmin,ymin,xmax,ymax,label")
        for i, row in enumerate(reader):
            if row.get("image_path") and Path(row["image_path"]).name not in names:
                continue
            try:
                x0, y0, x1, y1 = (float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
            except ValueError as e:
                raise InputError(f"{p.name} row {i + 2}: bad box {row}", "give pixel numbers") from e
            if not (x1 > x0 and y1 > y0) or not str(row["label"]).strip():
                raise InputError(f"{p.name} row {i + 2}: empty box or label {row}",
                                 "need xmin < xmax, ymin < ymax and a label")
            inside = shapely_box(x0, y0, x1, y1).intersection(shapely_box(0, 0, scene.width, scene.height))
            if not inside.is_empty:
                out.append(LabelledFeature(fid=i, label=str(row["label"]).strip(), geometry=inside))
    if not out:
        raise InputError(f"no box of {p.name} lies on raster {scene.name}",
                         "check the pixel coordinates and the image_path column")
    return out


def held_out_area(held_out: Sequence[LabelledFeature], block_size: float, buffer: float = 0.0) -> shapely.Geometry:
    """Pixels no training image may show: the held-out features and their whole split blocks, buffered."""
    from .splits import block_keys

    if not held_out:
        return shapely.Polygon()
    xs = np.array([f.centroid[0] for f in held_out])
    ys = np.array([f.centroid[1] for f in held_out])
    blocks = [shapely_box(bx * block_size, by * block_size, (bx + 1) * block_size, (by + 1) * block_size)
              for bx, by in set(block_keys(xs, ys, block_size))]
    return shapely.union_all(blocks + [f.geometry for f in held_out]).buffer(buffer, join_style="mitre")


def grid_boxes(size: float, grids: Sequence[int], overlap: float) -> list[Box]:
    """Multi-scale grid boxes of a ``size`` x ``size`` window (the index's region candidates)."""
    out: list[Box] = []
    for n in grids:
        cell = size / (n - (n - 1) * overlap)
        stride = cell * (1.0 - overlap)
        out += [(c * stride, r * stride, min(c * stride + cell, size), min(r * stride + cell, size))
                for r in range(n) for c in range(n)]
    return out


def box_iou(a: Box, b: Box) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class RegionPairBuilder:
    """Region pairs of one scene (see the module docstring)."""

    def __init__(self, builder: PairBuilder, cfg: RegionsConfig, *, seed: int = 0) -> None:
        self.builder, self.cfg = builder, cfg
        self.rng = np.random.default_rng(seed)
        self.instructions = builder.instructions

    def text(self, label: str) -> EmbedInput:
        """The referring text of a class (``template``), or the background text as given."""
        text = label if label == self.cfg.background else self.cfg.template.format(label=label)
        return EmbedInput(self.instructions["referring_query"], text=text)

    def labels(self) -> set[str]:
        """Texts beyond the features' classes this builder pairs with (the background's)."""
        return {self.cfg.background} if self.cfg.background else set()

    def _read(self, window: tuple[int, int, int, int]) -> np.ndarray:
        from ...backend.raster.tiling import read_tile

        b = self.builder
        image, _ = read_tile(b.scene, window, b.stretch, out_size=b.image_size, bands=b.bands)
        return image

    def _window(self, f: LabelledFeature, avoid: shapely.Geometry | None) -> tuple[int, int, int, int] | None:
        """A random square window holding ``f``'s bounds (or centred on it when larger), clear of ``avoid``."""
        scene, size = self.builder.scene, self.cfg.tile_size
        x0, y0, x1, y1 = f.geometry.bounds
        for _ in range(20):
            def start(lo: float, hi: float, extent: int) -> int:
                if hi - lo >= size:
                    a = b = int(round((lo + hi - size) / 2))
                else:
                    a, b = int(np.ceil(hi - size)), int(np.floor(lo))
                a, b = max(a, 0), min(b, max(extent - size, 0))
                return int(self.rng.integers(a, b + 1)) if b >= a else max(min(a, extent - size), 0)

            col, row = start(x0, x1, scene.width), start(y0, y1, scene.height)
            if avoid is None or not avoid.intersects(shapely_box(col, row, col + size, row + size)):
                return col, row, size, size
        return None

    def _label(self, b: Box, feats: list[tuple[str, shapely.Geometry, Box]]) -> str | None:
        """The label of window box ``b`` given the window's features (window pixels), or None."""
        cfg = self.cfg
        area = (b[2] - b[0]) * (b[3] - b[1])
        if area <= 0:
            return None
        geom = shapely_box(*b)
        cover: dict[str, float] = {}
        best: tuple[float, str | None] = (0.0, None)
        for label, g, fb in feats:
            cover[label] = cover.get(label, 0.0) + g.intersection(geom).area / area
            iou = box_iou(b, fb)
            if iou > best[0]:
                best = (iou, label)
        touched = sum(cover.values())
        if cfg.match == "cover":
            top: tuple[str | None, float] = max(cover.items(), key=lambda kv: kv[1], default=(None, 0.0))
            if top[0] is not None and top[1] >= cfg.min_match:
                return top[0]
        elif best[1] is not None and best[0] >= cfg.min_match:
            return best[1]
        off = touched if cfg.match == "cover" else best[0]  # how much of a feature the box is
        if cfg.background and off <= cfg.max_background:
            return cfg.background
        return None

    def pairs(self, train: Sequence[LabelledFeature], avoid: shapely.Geometry | None = None) -> list[Pair]:
        """Region pairs around the ``train`` features, on windows clear of the ``avoid`` area (pixels)."""
        cfg, size, out_size = self.cfg, self.cfg.tile_size, self.builder.image_size
        avoid = None if avoid is None or avoid.is_empty else avoid
        index = shapely.STRtree([f.geometry for f in train]) if train else None
        grid = grid_boxes(size, cfg.grid, cfg.overlap)
        out: list[Pair] = []
        refused = 0
        for f in train:
            for _ in range(cfg.tiles_per_feature):
                window = self._window(f, avoid)
                if window is None or index is None:
                    refused += 1
                    continue
                col, row = window[0], window[1]
                near = [train[int(i)] for i in index.query(shapely_box(col, row, col + size, row + size))]
                feats: list[tuple[str, shapely.Geometry, Box]] = []
                own_boxes: list[Box] = []
                for g in near:  # IoU is taken with a feature's whole box, so a sliver at the edge never matches
                    moved = shapely.affinity.translate(g.geometry, -col, -row)
                    local = moved.intersection(shapely_box(0, 0, size, size))
                    if not local.is_empty:
                        mx0, my0, mx1, my1 = (float(v) for v in moved.bounds)
                        lx0, ly0, lx1, ly1 = (float(v) for v in local.bounds)
                        feats.append((g.label, local, (mx0, my0, mx1, my1)))
                        own_boxes.append((lx0, ly0, lx1, ly1))
                boxes = list(grid) + (own_boxes if cfg.feature_boxes else [])
                labelled = [(b, lab) for b in boxes if (lab := self._label(b, feats)) is not None]
                if not labelled:
                    continue
                own = [x for x in labelled if x[1] != cfg.background]
                bg = [x for x in labelled if x[1] == cfg.background]
                self.rng.shuffle(own)  # type: ignore[arg-type]
                self.rng.shuffle(bg)  # type: ignore[arg-type]
                n_own = min(len(own), max(1, cfg.pairs_per_tile - min(len(bg), cfg.pairs_per_tile // 2)))
                chosen = own[:n_own] + bg[: cfg.pairs_per_tile - n_own]
                image = self._read(window)
                scale = out_size / size
                for b, lab in chosen:
                    ibox: Box = (b[0] * scale, b[1] * scale, b[2] * scale, b[3] * scale)
                    query = EmbedInput(self.instructions["region_query"], image=image, bbox=ibox)
                    centre = LabelledPoint(col + (b[0] + b[2]) / 2, row + (b[1] + b[3]) / 2, lab, f.fid)
                    out.append(Pair(query, self.text(lab), lab, KIND, centre,
                                    {"window": window, "box": (col + b[0], row + b[1], col + b[2], row + b[3])}))
        if refused:
            log.info("region pairs: %d tile placement(s) refused (they would show a held-out feature)", refused)
        if not out:
            raise InputError("no region pair could be built from the training features",
                             "lower regions.min_match, set regions.background, or use a smaller regions.tile_size")
        return out
