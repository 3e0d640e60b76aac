"""Searches that return regions: tile hits with their best boxes, or ranked boxes, under filters.

* ``level="tile"`` ranks tiles; each carries ``properties.regions``: its best candidate
  boxes after non-maximum suppression (from the index's stored region vectors, or, with
  ``rerank``, candidates of the top N tiles embedded at query time).
* ``level="region"`` ranks boxes (region features: ``properties.level == "region"``).
* A text query is compared with tiles through the ``text_query`` instruction and with
  regions through ``referring_query``; box, point and image queries use one vector.
* A drawn box (part of a box query) is compared with candidates of its own ground size:
  stored ones within a factor :data:`SCALE_RATIO`, or boxes of that size sliding over the
  top tiles (``rerank``).
* ``within`` / ``scenes`` filter tiles in SQLite first (:mod:`.filters`); a filter keeping
  few tiles is scored exactly from the stored vectors instead of through hnswlib.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .dedupe import collapse_duplicates
from .errors import InputError
from .filters import EXACT_MAX, TileFilter, tile_filter
from .regions import RegionSpec, grid_boxes, nms, scale_boxes
from .schemas import NearQuery, SearchRequest, SearchResponse
from .search import Query, _overlaps, find_hits, hit_feature, index_tiling, tile_properties
from .types import Box, EmbedInput, Hit, Scene, Stretch, TileRecord

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from .index.store import IndexStore
    from .model.embedder import Embedder

log = logging.getLogger(__name__)

#: Tiles whose candidates ``rerank`` scores when the request gives no number.
DEFAULT_RERANK = 20
#: Extra tile hits fetched so that folding byte-identical tiles into one still leaves ``k`` hits.
DUP_SLACK = 8
#: Stored candidates of a box query are kept when their ground size is within this factor of the box's.
SCALE_RATIO = 2.0


@dataclass
class RegionHit:
    """One scored box inside a tile."""

    record: TileRecord
    box: Box
    score: float


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def query_vectors(embedder: Embedder, query: Query) -> tuple[np.ndarray, np.ndarray]:
    """(vector against tiles, vector against regions): a text query uses ``referring_query`` for regions."""
    inputs = [query.embed_input(embedder)]
    if query.kind == "text":
        inputs.append(EmbedInput(embedder.instructions["referring_query"], text=query.text, latlon=query.latlon))
    vecs = embedder.encode(inputs, batch_size=len(inputs))
    return vecs[0], vecs[-1]


class _Scenes:
    """Stored scenes by id, read once per search."""

    def __init__(self, store: IndexStore) -> None:
        self.store = store
        self._cache: dict[str, tuple[Scene, Stretch]] = {}

    def get(self, scene_id: str) -> tuple[Scene, Stretch]:
        if scene_id not in self._cache:
            got = self.store.scene(scene_id)
            if got is None:
                raise InputError(f"scene {scene_id!r} vanished from index {self.store.path} during the search",
                                 "retry the search")
            self._cache[scene_id] = got
        return self._cache[scene_id]


# ---- tiles ---------------------------------------------------------------------------------------
def tile_hits(store: IndexStore, vec: np.ndarray, k: int, *, flt: TileFilter | None, min_score: float | None,
              exclude: BaseGeometry | None, near: NearQuery | None = None) -> list[Hit]:
    """Nearest tiles: hnswlib without a filter, exact scoring of a small filtered set, else filtered hnswlib;
    ``near`` (a radius filter / distance re-rank on the tile centres) goes through ``find_hits``."""
    if near is not None:
        if flt is not None:
            raise InputError("near (a radius / distance re-rank) cannot be combined with within or scenes yet",
                             "use near alone, or within/scenes alone")
        return find_hits(store, vec, k=k, min_score=min_score, exclude_wgs84=exclude, near=near)
    if flt is None:
        return find_hits(store, vec, k=k, min_score=min_score, exclude_wgs84=exclude)
    if len(flt.labels) <= EXACT_MAX:
        vecs, labels = store.tile_vectors(sorted(flt.labels))
        scores = _unit(vecs) @ _unit(vec) if len(labels) else np.zeros(0, np.float32)
        order = np.argsort(-scores, kind="stable").tolist()
        step = k * 4 + 16

        def ranked() -> Any:
            for s in range(0, len(order), step):
                chunk = order[s : s + step]
                recs = store.records_by_label([labels[i] for i in chunk])
                yield from ((recs[labels[i]], float(scores[i])) for i in chunk if labels[i] in recs)

        return _take(ranked(), k, min_score, exclude)
    ids = {r.tile_id for r in store.records_by_label(sorted(flt.labels)).values()}
    return _take(store.search(vec.reshape(1, -1), min(len(ids), k * 4 + 16), filter=lambda t: t in ids)[0],
                 k, min_score, exclude)


def _take(ranked: Any, k: int, min_score: float | None, exclude: BaseGeometry | None) -> list[Hit]:
    from shapely import wkt

    hits: list[Hit] = []
    for rec, score in ranked:
        if min_score is not None and score < min_score:
            break
        if exclude is not None and _overlaps(wkt.loads(rec.footprint_wgs84), exclude):
            continue
        hits.append(Hit(rank=len(hits) + 1, score=min(1.0, max(-1.0, score)), record=rec))
        if len(hits) == k:
            break
    return hits


# ---- candidates ----------------------------------------------------------------------------------
def _size_ok(box: Box, gsd: float, target_m: float | None) -> bool:
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
    scores = _unit(vecs) @ _unit(rvec)
    out = [RegionHit(records[r.tile_label], r.box, float(s)) for r, s in zip(rows, scores, strict=True)]
    sized = [h for h in out if _size_ok(h.box, h.record.gsd, target_m)]
    return sized or out  # no stored candidate of that size: the nearest sizes are all there is


def rerank_candidates(store: IndexStore, embedder: Embedder, rvec: np.ndarray, records: list[TileRecord],
                      target_m: float | None, scenes: _Scenes) -> list[RegionHit]:
    """Embed candidates of ``records`` at query time (grid, or boxes of ``target_m`` for a drawn box)."""
    from .raster.tiling import read_tile

    tiling = index_tiling(store)
    size = tiling.tile_size
    spec = RegionSpec.parse(store.regions_spec or None)
    q = _unit(rvec)
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
        scores = _unit(vecs) @ q
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


# ---- features ------------------------------------------------------------------------------------
def _region_rings(scenes: _Scenes, hits: list[RegionHit], tile_size: int, crs: str) -> list[list[list[float]]]:
    """The boxes of ``hits`` as closed rings in ``crs``: one coordinate transform per scene for all of them.

    Regions are at most a tile across, so their four corners are transformed (edges stay straight
    to well under a pixel at that scale).
    """
    from .raster import geometry

    out: list[list[list[float]]] = [[] for _ in hits]
    by_scene: dict[str, list[int]] = {}
    for i, h in enumerate(hits):
        by_scene.setdefault(h.record.scene_id, []).append(i)
    for scene_id, idx in by_scene.items():
        scene, _ = scenes.get(scene_id)
        cols: list[float] = []
        rows: list[float] = []
        for i in idx:
            c0, r0, c1, r1 = geometry.image_box_to_pixel_box(hits[i].record.window, tile_size, hits[i].box)
            cols += [c0, c1, c1, c0]
            rows += [r0, r0, r1, r1]
        xs, ys = geometry.pixels_to_native(scene, cols, rows)
        ox, oy = geometry.transform_xy(xs, ys, scene.crs_wkt, crs)
        xl, yl = ox.tolist(), oy.tolist()
        for j, i in enumerate(idx):
            ring = [[xl[4 * j + m], yl[4 * j + m]] for m in range(4)]
            out[i] = ring + [ring[0]]
    return out


def region_polygons(scenes: _Scenes, hits: list[RegionHit], tile_size: int, crs: str) -> list[Any]:
    """The boxes of ``hits`` as shapely polygons in ``crs``."""
    from shapely.geometry import Polygon

    return [Polygon(r) for r in _region_rings(scenes, hits, tile_size, crs)]


def region_geometry(scenes: _Scenes, rec: TileRecord, box: Box, tile_size: int, crs: str) -> Any:
    return region_polygons(scenes, [RegionHit(rec, box, 0.0)], tile_size, crs)[0]


def region_dicts(scenes: _Scenes, hits: list[RegionHit], tile_size: int, crs: str) -> list[dict[str, Any]]:
    """``{"rank", "score", "bbox_image", "geometry"}`` per hit (rank = position in ``hits``)."""
    rings = _region_rings(scenes, hits, tile_size, crs)
    return [{"rank": i + 1, "score": round(h.score, 6), "bbox_image": [round(float(v), 3) for v in h.box],
             "geometry": {"type": "Polygon", "coordinates": [ring]}} for i, (h, ring) in enumerate(zip(hits, rings, strict=True))]


def _not_excluded(scenes: _Scenes, h: RegionHit, tile_size: int, exclude: BaseGeometry | None) -> bool:
    from shapely import wkt

    if exclude is None or not _overlaps(wkt.loads(h.record.footprint_wgs84), exclude):
        return True
    return not _overlaps(region_geometry(scenes, h.record, h.box, tile_size, "EPSG:4326"), exclude)


def _in_area(scenes: _Scenes, h: RegionHit, tile_size: int, flt: TileFilter | None, mode: str) -> bool:
    """Whether the filter's area (if any) keeps region ``h`` under ``mode`` (its outline, not its tile)."""
    if flt is None or flt.area is None:
        return True
    from shapely.prepared import prep

    from .filters import keeps

    return keeps(prep(flt.area), flt.area, region_geometry(scenes, h.record, h.box, tile_size, "EPSG:4326"), mode)


# ---- the search ----------------------------------------------------------------------------------
def check(store: IndexStore, req: SearchRequest) -> TileFilter | None:
    """Validate the region/filter parts of ``req`` against ``store`` (no model); the tile filter if any."""
    from .raster import geometry

    geometry.parse_crs(req.out_crs)
    if req.level == "region" and store.regions_spec is None and req.rerank is None:
        raise InputError(f"index {store.path} stores no regions, so --level region needs --rerank N",
                         "add --rerank N (score the candidates of the top N tiles), or re-index with --regions")
    if req.near is not None and req.level != "tile":
        raise InputError("near (a radius / distance re-rank on tile centres) applies to tile hits",
                         "search with level tile, or drop near")
    # ranking regions: every tile sharing area with it may hold a kept region; the regions are then held to the mode
    mode = req.within_mode if req.level == "tile" else "intersects"
    return tile_filter(store, within=req.within, within_crs=req.within_crs, scenes=req.scenes, within_mode=mode)


_UNSET: Any = object()


def run(store: IndexStore, embedder: Embedder, query: Query, req: SearchRequest,
        flt: TileFilter | None = _UNSET) -> SearchResponse:
    """Answer ``req`` (already turned into ``query``) with tiles or regions; see the module docstring."""
    t0 = time.perf_counter()
    if flt is _UNSET:
        flt = check(store, req)
    has_regions = store.regions_spec is not None
    tvec, rvec = query_vectors(embedder, query)
    tile_size = index_tiling(store).tile_size
    scenes = _Scenes(store)
    target_m = query.ground_size_m if query.kind == "box" else None
    use_rerank = req.rerank is not None
    n_rerank = req.rerank or DEFAULT_RERANK
    features: list[dict[str, Any]] = []
    if req.level == "tile":
        hits = tile_hits(store, tvec, req.k + DUP_SLACK, flt=flt, min_score=req.min_score,
                         exclude=query.exclude_wgs84, near=req.near)
        hits = collapse_duplicates(store, hits, req.k)  # byte-identical tiles: one hit, the others named
        cands: list[RegionHit] = []
        if req.regions_per_hit and hits:
            if use_rerank:
                cands = rerank_candidates(store, embedder, rvec, [h.record for h in hits[:n_rerank]], target_m,
                                          scenes)
            elif has_regions:
                labels = store.tile_labels([h.record.tile_id for h in hits])
                cands = stored_candidates(store, rvec, {labels[h.record.tile_id]: h.record for h in hits
                                                        if h.record.tile_id in labels}, target_m)
        cands = [c for c in cands if _not_excluded(scenes, c, tile_size, query.exclude_wgs84)
                 and _in_area(scenes, c, tile_size, flt, req.within_mode)]
        best = best_per_tile(cands, iou=req.nms_iou, limit=req.regions_per_hit)
        for h in hits:
            f = hit_feature(h, req.out_crs)
            f["properties"]["level"] = "tile"
            f["properties"]["regions"] = region_dicts(scenes, best.get(h.record.tile_id, []), tile_size, req.out_crs)
            features.append(f)
        source = "rerank" if use_rerank else ("index" if has_regions else None)
    else:
        ranked = _rank_regions(store, embedder, query, req, flt, tvec, rvec, target_m, scenes, tile_size,
                               use_rerank or not has_regions, n_rerank)
        features = region_features(scenes, ranked[: req.k], tile_size, req.out_crs)
        source = "rerank" if use_rerank or not has_regions else "index"
    info = {"kind": query.kind, **(query.info or {}), "level": req.level, "regions_from": source}
    if query.text is not None:
        info["text"] = query.text
    if flt is not None:
        info["filter"] = flt.description
    if target_m is not None:
        info["box_ground_size_m"] = round(target_m, 3)
    return SearchResponse(features=features, crs=req.out_crs, query=info,  # type: ignore[arg-type]
                          took_ms=round((time.perf_counter() - t0) * 1000, 2))


def _rank_regions(store: IndexStore, embedder: Embedder, query: Query, req: SearchRequest, flt: TileFilter | None,
                  tvec: np.ndarray, rvec: np.ndarray, target_m: float | None, scenes: _Scenes, tile_size: int,
                  rerank: bool, n_rerank: int) -> list[RegionHit]:
    """Regions best first (NMS within each tile), filtered, at most ``req.k`` plus slack."""
    if rerank:
        hits = tile_hits(store, tvec, n_rerank, flt=flt, min_score=None, exclude=None)
        cands = rerank_candidates(store, embedder, rvec, [h.record for h in hits], target_m, scenes)
        return _finish(cands, req, scenes, tile_size, query.exclude_wgs84, flt=flt)
    if flt is not None and len(flt.labels) <= EXACT_MAX:
        recs = store.records_by_label(sorted(flt.labels))
        return _finish(stored_candidates(store, rvec, recs, target_m), req, scenes, tile_size, query.exclude_wgs84,
                       flt=flt)
    want = req.k * 4 + 16
    slack = req.k if query.exclude_wgs84 is None else req.k * 4 + 16
    while True:
        found = store.search_regions(rvec, want, tile_labels=flt.labels if flt is not None else None)
        if target_m is not None:  # keep stored candidates of the drawn box's ground size, if any
            gsd = {lab: rec.gsd for lab, rec in store.records_by_label({r.tile_label for r, _ in found}).items()}
            found = [(r, s) for r, s in found if r.tile_label in gsd and _size_ok(r.box, gsd[r.tile_label], target_m)] \
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


def _finish(cands: list[RegionHit], req: SearchRequest, scenes: _Scenes, tile_size: int,
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
        if _not_excluded(scenes, r, tile_size, exclude) and _in_area(scenes, r, tile_size, flt, req.within_mode):
            out.append(r)
            if len(out) >= req.k:
                break
    return out


def region_features(scenes: _Scenes, ranked: list[RegionHit], tile_size: int, crs: str) -> list[dict[str, Any]]:
    """Ranked regions as GeoJSON features: each box's polygon, with its tile's properties."""
    out = []
    for i, (r, reg) in enumerate(zip(ranked, region_dicts(scenes, ranked, tile_size, crs), strict=True)):
        reg["rank"] = 1
        props = tile_properties(Hit(rank=i + 1, score=r.score, record=r.record))
        props.update(level="region", bbox_image=reg["bbox_image"], regions=[reg])
        out.append({"type": "Feature", "geometry": reg["geometry"], "properties": props})
    return out
