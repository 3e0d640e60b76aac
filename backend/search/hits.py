"""Nearest tiles to a vector: hnswlib, or exact scoring of a small filtered set, with a score floor,
an area to leave out (the query's own footprint) and a location filter (:mod:`.location`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..schemas import NearQuery
from ..types import Box, Hit, TileRecord
from . import filters

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from ..index.store import IndexStore
    from .filters import TileFilter

log = logging.getLogger(__name__)


@dataclass
class RegionHit:
    """One scored box inside a tile."""

    record: TileRecord
    box: Box
    score: float


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def overlaps(a: BaseGeometry, b: BaseGeometry) -> bool:
    """True when ``a`` and ``b`` share area (touching edges do not count)."""
    if not a.intersects(b):
        return False
    inter = a.intersection(b).area
    return inter > 1e-4 * max(min(a.area, b.area), 1e-18)


def find_hits(store: IndexStore, vector: np.ndarray, *, k: int, min_score: float | None = None,
              exclude_wgs84: BaseGeometry | None = None, near: NearQuery | None = None) -> list[Hit]:
    """Nearest tiles to ``vector``, dropping those below ``min_score`` or overlapping ``exclude_wgs84``;
    ``near`` filters / re-ranks them by distance to a centre (see :mod:`.location`)."""
    from shapely import wkt

    if near is not None:
        from .location import near_hits

        excl = exclude_wgs84
        keep = None if excl is None else (lambda rec: not overlaps(wkt.loads(rec.footprint_wgs84), excl))
        return near_hits(store, vector, near, k=k, min_score=min_score, keep=keep)
    total = int(store.count)
    if total <= 0:
        return []
    want = min(total, k if exclude_wgs84 is None else k * 4 + 16)
    vec = np.asarray(vector, dtype=np.float32).reshape(1, -1)
    while True:
        results = store.search(vec, want)[0]
        hits: list[Hit] = []
        for rec, score in results:
            if min_score is not None and score < min_score:
                break
            if exclude_wgs84 is not None and overlaps(wkt.loads(rec.footprint_wgs84), exclude_wgs84):
                continue
            hits.append(Hit(rank=len(hits) + 1, score=float(score), record=rec))
            if len(hits) == k:
                return hits
        exhausted = len(results) < want or want >= total
        below = min_score is not None and results and results[-1][1] < min_score
        if exhausted or below:
            return hits
        want = min(total, want * 4)


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
    if len(flt.labels) <= filters.EXACT_MAX:
        vecs, labels = store.tile_vectors(sorted(flt.labels))
        scores = unit(vecs) @ unit(vec) if len(labels) else np.zeros(0, np.float32)
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
        if exclude is not None and overlaps(wkt.loads(rec.footprint_wgs84), exclude):
            continue
        hits.append(Hit(rank=len(hits) + 1, score=min(1.0, max(-1.0, score)), record=rec))
        if len(hits) == k:
            break
    return hits
