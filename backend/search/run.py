"""The search entry point: :func:`search` answers one :class:`SearchRequest` on an index (or on a
:class:`~.multi.MultiStore`); :func:`search_vector` answers an embedding. The CLI, the HTTP routes,
the workflows and multi-index search all come through here (via ``service.run_search``).

A request passes each module once, downward: :mod:`.query` builds the query (no model), :mod:`.filters`
turns ``within``/``scenes`` into the tiles allowed, the model embeds the query, :mod:`.hits` finds tiles
(:mod:`.location` under ``near``), :mod:`.candidates` finds their regions, :mod:`.features` writes GeoJSON.

* ``level="tile"`` ranks tiles; each carries ``properties.regions``: its best candidate
  boxes after non-maximum suppression (from the index's stored region vectors, or, with
  ``rerank``, candidates of the top N tiles embedded at query time).
* ``level="region"`` ranks boxes (region features: ``properties.level == "region"``).
* A text query is compared with tiles through the ``text_query`` instruction and with
  regions through ``referring_query``; box, point and image queries use one vector.
* A drawn box (part of a box query) is compared with candidates of its own ground size:
  stored ones within a factor :data:`~.candidates.SCALE_RATIO`, or boxes of that size sliding
  over the top tiles (``rerank``).
* ``within`` / ``scenes`` filter tiles in SQLite first (:mod:`.filters`); a filter keeping
  few tiles is scored exactly from the stored vectors instead of through hnswlib.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..loading import EmbedderLike
from ..schemas import NearQuery, SearchRequest, SearchResponse
from ..types import EmbedInput
from .candidates import DEFAULT_RERANK, best_per_tile, rank_regions, rerank_candidates, stored_candidates
from .dedupe import collapse_duplicates
from .features import Scenes, hit_feature, in_area, not_excluded, region_dicts, region_features
from .filters import TileFilter, tile_filter
from .hits import RegionHit, find_hits, tile_hits
from .query import Query, build_query, index_tiling

if TYPE_CHECKING:
    from ..index.store import IndexStore
    from ..model.embedder import Embedder

log = logging.getLogger(__name__)

def search(store: IndexStore, embedder: EmbedderLike, req: SearchRequest) -> SearchResponse:
    """Answer ``req`` on ``store``: build the query and check the filters (no model), then embed and search.

    ``embedder`` is bound to the index's recorded model first (``ModelMismatchError`` when it differs,
    unless ``req.force``).
    """
    from ..binding import bind

    t0 = time.perf_counter()
    query = build_query(store, req)
    flt = check(store, req)
    emb = embedder() if callable(embedder) and not hasattr(embedder, "encode") else embedder
    emb = bind(emb, store.meta, index=str(req.index), force=bool(getattr(req, "force", False)))  # type: ignore[arg-type]
    resp = run(store, emb, query, req, flt)
    resp.took_ms = round((time.perf_counter() - t0) * 1000, 2)
    return resp


def search_vector(store: IndexStore, vector: np.ndarray, *, k: int, min_score: float | None = None,
                  out_crs: str = "EPSG:4326", near: NearQuery | None = None) -> SearchResponse:
    """Tiles nearest an embedding (no model) as a GeoJSON FeatureCollection."""
    from ..raster import geometry

    t0 = time.perf_counter()
    geometry.parse_crs(out_crs)
    hits = find_hits(store, vector, k=k, min_score=min_score, near=near)
    return SearchResponse(features=[hit_feature(h, out_crs) for h in hits], crs=out_crs,  # type: ignore[misc]
                          query={"kind": "vector"}, took_ms=round((time.perf_counter() - t0) * 1000, 2))


def query_vectors(embedder: Embedder, query: Query) -> tuple[np.ndarray, np.ndarray]:
    """(vector against tiles, vector against regions): a text query uses ``referring_query`` for regions."""
    inputs = [query.embed_input(embedder)]
    if query.kind == "text":
        inputs.append(EmbedInput(embedder.instructions["referring_query"], text=query.text, latlon=query.latlon))
    vecs = embedder.encode(inputs, batch_size=len(inputs))
    return vecs[0], vecs[-1]


def check(store: IndexStore, req: SearchRequest) -> TileFilter | None:
    """Validate the region/filter parts of ``req`` against ``store`` (no model); the tile filter if any."""
    from ..raster import geometry

    geometry.parse_crs(req.out_crs)
    if req.level == "region" and store.regions_spec is None and req.rerank is None:
        raise InputError(f"index {store.path} stores no regions, so --level region needs --rerank N",
                         "add --rerank N (score the candidates of the top N tiles), or re-index with --regions")
    if req.near is not None and req.level != "tile":
        raise InputError("near (a radius / distance re-rank on tile centres) applies to tile hits",
                         "search with level tile, or drop near")
    # ranking regions: every tile sharing area with it may hold a kept region; the regions are then held to the mode
    mode = req.within_mode if req.level == "tile" else "intersects"
    return tile_filter(store, within=req.within, within_crs=req.within_crs, scenes=req.scenes,
                       date_from=req.date_from, date_to=req.date_to, within_mode=mode)


_UNSET: Any = object()
#: Extra tile hits fetched so that folding byte-identical tiles into one still leaves ``k`` hits.
DUP_SLACK = 8


def run(store: IndexStore, embedder: Embedder, query: Query, req: SearchRequest,
        flt: TileFilter | None = _UNSET) -> SearchResponse:
    """Answer ``req`` (already turned into ``query``) with tiles or regions; see the module docstring."""
    t0 = time.perf_counter()
    if flt is _UNSET:
        flt = check(store, req)
    has_regions = store.regions_spec is not None
    tvec, rvec = query_vectors(embedder, query)
    tile_size = index_tiling(store).tile_size
    scenes = Scenes(store)
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
        cands = [c for c in cands if not_excluded(scenes, c, tile_size, query.exclude_wgs84)
                 and in_area(scenes, c, tile_size, flt, req.within_mode)]
        best = best_per_tile(cands, iou=req.nms_iou, limit=req.regions_per_hit)
        for h in hits:
            f = hit_feature(h, req.out_crs)
            f["properties"]["level"] = "tile"
            f["properties"]["regions"] = region_dicts(scenes, best.get(h.record.tile_id, []), tile_size, req.out_crs)
            features.append(f)
        source = "rerank" if use_rerank else ("index" if has_regions else None)
    else:
        ranked = rank_regions(store, embedder, query, req, flt, tvec, rvec, target_m, scenes, tile_size,
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
    from ..temporal.hits import annotate  # dates of hits, other dates, score maps

    annotate(store, features, tvec, req, flt.labels if flt is not None else None, info)
    return SearchResponse(features=features, crs=req.out_crs, query=info,  # type: ignore[arg-type]
                          took_ms=round((time.perf_counter() - t0) * 1000, 2))
