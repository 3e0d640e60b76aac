"""Relevance feedback at region level: marks on region hits -> a refined direction over region vectors.

The same Rocchio + probe direction as :mod:`.feedback`, computed in region space: the
query's region vector (``referring_query`` for text), the stored vectors of the marked
regions, and a ranking of the index's stored regions (per-tile NMS), so a region search
refined stays a region search. Saved marks are the region boxes (WGS84 polygons).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError, ModelMismatchError
from ..schemas_workflows import RefineRequest, RefineResponse, RegionMark
from .tiles import normalise

if TYPE_CHECKING:
    from ..index.store import IndexStore
    from ..model.embedder import Embedder
    from ..search.hits import RegionHit

log = logging.getLogger(__name__)

#: A stored region is the marked one when their boxes overlap at least this much (IoU, tile-image pixels).
SAME_BOX_IOU = 0.9


def require_regions(store: IndexStore) -> None:
    if store.regions_spec is None:
        raise InputError(f"index {store.path} stores no regions, so region hits cannot be refined",
                         "refine the tile hits (level tile), or re-index with --regions")


def _find(store: IndexStore, marks: list[RegionMark]) -> list[tuple[int, tuple[float, ...], np.ndarray]]:
    """(tile label, stored box, unit vector) of each marked region (InputError naming unknown marks)."""
    from ..regions import iou

    labels = store.tile_labels(sorted({m.tile_id for m in marks}))
    unknown = sorted({m.tile_id for m in marks} - set(labels))
    if unknown:
        raise InputError(f"tile id(s) {unknown[:3]} of region marks are not in index {store.path}",
                         "mark region hits of this index's own search")
    rows, vecs = store.regions_of(sorted(set(labels.values())))
    out = []
    for m in marks:
        lab = labels[m.tile_id]
        best, j = max(((iou(r.box, m.bbox_image), i) for i, r in enumerate(rows) if r.tile_label == lab),
                      default=(0.0, -1))
        if best < SAME_BOX_IOU:
            raise InputError(f"region {m.bbox_image} of tile {m.tile_id} is not a stored region of index {store.path}",
                             "mark region hits returned by a region search of this index")
        out.append((lab, tuple(rows[j].box), normalise(vecs[j])))
    return out


def check_region_marks(req: RefineRequest) -> None:
    key = [(m.tile_id, tuple(round(v, 1) for v in m.bbox_image)) for m in req.good_regions]
    both = sorted(set(key) & {(m.tile_id, tuple(round(v, 1) for v in m.bbox_image)) for m in req.bad_regions})
    if both:
        raise InputError(f"region(s) {both[:2]} are marked both good and bad", "mark each region once")
    if not req.good_regions and not req.bad_regions:
        raise InputError("no region marks: nothing to refine from", "mark at least one region hit good or bad")


def region_query_vector(store: IndexStore, embedder: Embedder, req: RefineRequest) -> np.ndarray:
    """The original query's vector against regions (``referring_query`` for text)."""
    from ..search import build_query
    from ..search.run import query_vectors

    assert req.query is not None
    return query_vectors(embedder, build_query(store, req.query))[1]


def refine_regions(store: IndexStore, req: RefineRequest, query_vector: np.ndarray) -> RefineResponse:
    """One feedback round over the stored regions of ``store``; the hits are region features."""
    from ..regions import nms
    from ..search.features import Scenes, region_features
    from ..search.hits import RegionHit
    from ..search.query import index_tiling
    from .feedback import refine_direction

    t0 = time.perf_counter()
    require_regions(store)
    check_region_marks(req)
    q = np.asarray(query_vector, dtype=np.float32).reshape(-1)
    if q.shape[0] != int(store.dim):
        raise ModelMismatchError(f"query vector has {q.shape[0]} values but index {store.path} holds "
                                 f"{store.dim}-d vectors", "send the vector a region search of this index returned")
    good, bad = _find(store, req.good_regions), _find(store, req.bad_regions)
    dim = int(store.dim)
    gv = np.stack([v for _, _, v in good]) if good else np.zeros((0, dim), np.float32)
    bv = np.stack([v for _, _, v in bad]) if bad else np.zeros((0, dim), np.float32)
    d = refine_direction(q, gv, bv, alpha=req.alpha, beta=req.beta, gamma=req.gamma, probe_weight=req.probe_weight)
    drop = {(lab, box) for lab, box, _ in bad} | ({(lab, box) for lab, box, _ in good} if req.exclude_marked else set())
    want = (req.k + len(drop)) * 4 + 16
    while True:
        found = [(r, s) for r, s in store.search_regions(d, want) if (r.tile_label, tuple(r.box)) not in drop]
        by_tile: dict[int, list[tuple[Any, float]]] = {}
        for r, s in found:
            by_tile.setdefault(r.tile_label, []).append((r, s))
        kept = sorted((rs[i] for rs in by_tile.values()
                       for i in nms([r.box for r, _ in rs], [s for _, s in rs], iou_threshold=0.5)),
                      key=lambda x: -x[1])[: req.k]
        if len(kept) >= req.k or want >= store.region_count:
            break
        want = min(store.region_count, want * 4)
    recs = store.records_by_label({r.tile_label for r, _ in kept})
    hits = [RegionHit(recs[r.tile_label], tuple(r.box), float(s)) for r, s in kept if r.tile_label in recs]
    scenes = Scenes(store)
    tile_size = index_tiling(store).tile_size
    marks_path = save_region_marks(store, req, scenes, tile_size) if req.save_marks else None
    return RefineResponse(
        features=region_features(scenes, hits, tile_size, req.out_crs), crs=req.out_crs,  # type: ignore[arg-type]
        query={"kind": "refine", "level": "region", "good": len(good), "bad": len(bad)},
        took_ms=round((time.perf_counter() - t0) * 1000, 2), query_vector=[float(v) for v in q],
        refined_vector=[float(v) for v in d], marks_path=marks_path)


def save_region_marks(store: IndexStore, req: RefineRequest, scenes: Any, tile_size: int) -> str:
    """The region marks as a GeoJSON layer of WGS84 box polygons (field ``label``) ``geovec train`` reads."""
    from shapely.geometry import mapping

    from ..search.features import region_polygons
    from ..search.hits import RegionHit

    label = req.label or (req.query.text if req.query is not None and req.query.text else None)
    if not label:
        raise InputError("the marks need a label to be saved", "pass --label (e.g. the class the good hits show)")
    rows = [(m, label, "good") for m in req.good_regions]
    if req.bad_label:
        rows += [(m, req.bad_label, "bad") for m in req.bad_regions]
    hits: list[RegionHit] = []
    for m, _, _ in rows:
        hits.append(RegionHit(store.get(m.tile_id), tuple(m.bbox_image), 0.0))  # type: ignore[arg-type]
    polys = region_polygons(scenes, hits, tile_size, "EPSG:4326")
    feats = [{"type": "Feature", "geometry": mapping(p), "properties": {
        "label": lab, "mark": mark, "level": "region", "tile_id": m.tile_id, "bbox_image": list(m.bbox_image),
        "scene_id": h.record.scene_id}} for (m, lab, mark), h, p in zip(rows, hits, polys, strict=True)]
    assert req.save_marks is not None
    from .feedback import write_marks

    return write_marks(req.save_marks, feats)
