"""Region candidates of tile hits: the index's stored boxes, or boxes embedded at query time (``rerank``),
sized like a drawn box, with non-maximum suppression per tile; and the ranking of regions over the index."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..regions import RegionSpec, grid_boxes, nms, scale_boxes
from ..schemas import SearchRequest
from ..types import Box, TileRecord
from . import filters
from .features import Scenes, in_area, not_excluded
from .hits import RegionHit, tile_hits, unit
from .query import Query, index_tiling

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from ..index.store import IndexStore
    from ..model.embedder import Embedder
    from .filters import TileFilter

log = logging.getLogger(__name__)

#: Tiles whose candidates ``rerank`` scores when the request gives no number.
DEFAULT_RERANK = 20

#: Stored candidates of a box query are kept when their ground size is within this factor of the box's.
SCALE_RATIO = 2.0


def size_ok(box: Box, gsd: float, target_m: float | None) -> bool:
    """Whether ``box`` (pixels at ``gsd`` m) is within :data:`SCALE_RATIO` of ``target_m`` on the ground."""
    if target_m is None:
        return True
    size = math.sqrt(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)) * gsd
    return target_m / SCALE_RATIO <= size <= target_m * SCALE_RATIO


def stored_candidates(store: IndexStore, rvec: np.ndarray, records: dict[int, TileRecord],
                      target_m: float | None) -> list[RegionHit]:
    """Every stored candidate of the tiles (label -> record), scored exactly; sized like ``target_m`` if given."""
    rows, vecs = store.regions_of(list(records))
    if not rows:
        return []
    scores = unit(vecs) @ unit(rvec)
    out = [RegionHit(records[r.tile_label], r.box, float(s)) for r, s in zip(rows, scores, strict=True)]
    sized = [h for h in out if size_ok(h.box, h.record.gsd, target_m)]
    return sized or out  # no stored candidate of that size: the nearest sizes are all there is


def rerank_candidates(store: IndexStore, embedder: Embedder, rvec: np.ndarray, records: list[TileRecord],
                      target_m: float | None, scenes: Scenes) -> list[RegionHit]:
    """Embed candidates of ``records`` at query time (grid, or boxes of ``target_m`` for a drawn box)."""
    from ..raster.tiling import read_tile

    tiling = index_tiling(store)
    size = tiling.tile_size
    spec = RegionSpec.parse(store.regions_spec or None)
    q = unit(rvec)
    out: list[RegionHit] = []
    for rec in records:
        if target_m is not None:
            px = target_m / max(rec.gsd, 1e-9)
            if px < spec.min_size:  # the drawn object spans under min_size pixels of this tile: not visible here
                continue
            boxes = scale_boxes(size, px, px, cap=spec.max_candidates)
        else:
            boxes = grid_boxes(size, spec)
        scene, stretch = scenes.get(rec.scene_id)
        image, _ = read_tile(scene, rec.window, stretch, out_size=size)
        vecs = embedder.encode_regions(image, boxes)
        scores = unit(vecs) @ q
        out += [RegionHit(rec, b, float(s)) for b, s in zip(boxes, scores, strict=True)]
    return out


def best_per_tile(cands: list[RegionHit], *, iou: float, limit: int | None) -> dict[str, list[RegionHit]]:
    """Per tile: NMS over its candidates, best first, at most ``limit``."""
    by_tile: dict[str, list[RegionHit]] = {}
    for c in cands:
        by_tile.setdefault(c.record.tile_id, []).append(c)
    out: dict[str, list[RegionHit]] = {}
    for tid, cs in by_tile.items():
        keep = nms([c.box for c in cs], [c.score for c in cs], iou_threshold=iou, limit=limit)
        out[tid] = [cs[i] for i in keep]
    return out


def rank_regions(store: IndexStore, embedder: Embedder, query: Query, req: SearchRequest, flt: TileFilter | None,
                  tvec: np.ndarray, rvec: np.ndarray, target_m: float | None, scenes: Scenes, tile_size: int,
                  rerank: bool, n_rerank: int) -> list[RegionHit]:
    """Regions best first (NMS within each tile), filtered, at most ``req.k`` plus slack."""
    if rerank:
        hits = tile_hits(store, tvec, n_rerank, flt=flt, min_score=None, exclude=None)
        cands = rerank_candidates(store, embedder, rvec, [h.record for h in hits], target_m, scenes)
        return _finish(cands, req, scenes, tile_size, query.exclude_wgs84, flt=flt)
    if flt is not None and len(flt.labels) <= filters.EXACT_MAX:
        recs = store.records_by_label(sorted(flt.labels))
        return _finish(stored_candidates(store, rvec, recs, target_m), req, scenes, tile_size, query.exclude_wgs84,
                       flt=flt)
    want = req.k * 4 + 16
    slack = req.k if query.exclude_wgs84 is None else req.k * 4 + 16
    while True:
        found = store.search_regions(rvec, want, tile_labels=flt.labels if flt is not None else None)
        if target_m is not None:  # keep stored candidates of the drawn box's ground size, if any
            gsd = {lab: rec.gsd for lab, rec in store.records_by_label({r.tile_label for r, _ in found}).items()}
            found = [(r, s) for r, s in found if r.tile_label in gsd and size_ok(r.box, gsd[r.tile_label], target_m)] \
                or found
        if req.min_score is not None:
            found = [(r, s) for r, s in found if s >= req.min_score]
        by_tile: dict[int, list[tuple[Any, float]]] = {}
        for r, s in found:
            by_tile.setdefault(r.tile_label, []).append((r, s))
        kept = [rs[i] for rs in by_tile.values()
                for i in nms([r.box for r, _ in rs], [s for _, s in rs], iou_threshold=req.nms_iou)]
        kept.sort(key=lambda x: -x[1])
        kept = kept[:slack]
        recs = store.records_by_label({r.tile_label for r, _ in kept})  # only the tiles of the chosen regions
        cands = [RegionHit(recs[r.tile_label], r.box, s) for r, s in kept if r.tile_label in recs]
        out = _finish(cands, req, scenes, tile_size, query.exclude_wgs84, nms_done=True, flt=flt)
        if len(out) >= req.k or want >= store.region_count:
            return out
        want = min(store.region_count, want * 4)


def _finish(cands: list[RegionHit], req: SearchRequest, scenes: Scenes, tile_size: int,
            exclude: BaseGeometry | None, *, nms_done: bool = False, flt: TileFilter | None = None) -> list[RegionHit]:
    """The best ``req.k`` of ``cands`` after per-tile NMS (skipped when ``nms_done``), the exclusion and the area."""
    if req.min_score is not None:
        cands = [c for c in cands if c.score >= req.min_score]
    if nms_done:
        ranked = sorted(cands, key=lambda r: -r.score)
    else:
        best = best_per_tile(cands, iou=req.nms_iou, limit=None)
        ranked = sorted((r for rs in best.values() for r in rs), key=lambda r: -r.score)
    out: list[RegionHit] = []
    for r in ranked:
        if not_excluded(scenes, r, tile_size, exclude) and in_area(scenes, r, tile_size, flt, req.within_mode):
            out.append(r)
            if len(out) >= req.k:
                break
    return out
