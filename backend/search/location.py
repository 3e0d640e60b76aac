"""Location conditioning on the stored tile centres: a radius filter and a distance re-rank.

Before this, a location only added coordinate text to the prompt. Here it acts on
the hits: ``radius_km`` keeps tiles centred within that great-circle distance of
the centre; ``decay_km`` lowers each hit's ranking score by ``weight`` per
``decay_km`` of distance (the cosine score itself is kept in ``score``; the
ranking score is ``rank_score``). A small radius is answered exactly from SQLite
(tiles in the radius's lat/lon box, brute-force cosine); a large one by widening
the approximate search until enough hits pass the filter.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ..index import db
from ..types import Hit

if TYPE_CHECKING:
    from ..index.store import IndexStore
    from ..schemas import NearQuery
    from ..types import TileRecord

log = logging.getLogger(__name__)

EARTH_KM = 6371.0088
EXACT_MAX = 50_000  # tiles in the radius's box answered by brute force


def haversine_km(lat1: float | np.ndarray, lon1: float | np.ndarray, lat2: float | np.ndarray,
                 lon2: float | np.ndarray) -> np.ndarray:
    """Great-circle distance in km (vectorised)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return np.asarray(2 * EARTH_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0))))


def _latlon_box(lat: float, lon: float, radius_km: float) -> tuple[float, float, float, float] | None:
    """(lat0, lat1, lon0, lon1) holding the radius; None when it wraps a pole or the antimeridian."""
    dlat = math.degrees(radius_km / EARTH_KM)
    coslat = math.cos(math.radians(lat))
    if lat - dlat <= -90 or lat + dlat >= 90 or coslat < 1e-6:
        return None
    dlon = math.degrees(radius_km / (EARTH_KM * coslat))
    if lon - dlon < -180 or lon + dlon > 180:
        return None
    return lat - dlat, lat + dlat, lon - dlon, lon + dlon


def _exact_in_radius(store: IndexStore, vec: np.ndarray, near: NearQuery) -> list[tuple[TileRecord, float]] | None:
    """Every tile within the radius with its cosine score, or None when the box holds too many tiles."""
    assert near.radius_km is not None
    box = _latlon_box(near.lat, near.lon, near.radius_km)
    if box is None:
        return None
    con = db.connect(store.path / "meta.sqlite", readonly=True)
    try:
        where = "center_lat BETWEEN ? AND ? AND center_lon BETWEEN ? AND ?"
        (n,) = con.execute(f"SELECT COUNT(*) FROM tiles WHERE {where}", box).fetchone()
        if n > EXACT_MAX:
            return None
        rows = con.execute(f"SELECT {db.TILE_COLS}, vector FROM tiles WHERE {where}", box).fetchall()
    finally:
        con.close()
    if not rows:
        return []
    recs = [db.tile_from_row(r[:-1]) for r in rows]
    mat = np.stack([db.blob_vector(r[-1], store.dim) for r in rows])
    mat /= np.maximum(np.linalg.norm(mat, axis=1, keepdims=True), 1e-12)
    q = vec / max(float(np.linalg.norm(vec)), 1e-12)
    scores = mat @ q
    return [(rec, float(s)) for rec, s in zip(recs, scores.tolist(), strict=True)]


def near_hits(store: IndexStore, vector: np.ndarray, near: NearQuery, *, k: int, min_score: float | None,
              keep: Callable[[TileRecord], bool] | None = None) -> list[Hit]:
    """The ``k`` best tiles for ``vector`` under ``near``'s filter and re-rank (ranked by ``rank_score``)."""
    vec = np.asarray(vector, dtype=np.float32).ravel()
    total = int(store.count)
    if total <= 0:
        return []
    candidates = _exact_in_radius(store, vec, near) if near.radius_km is not None else None
    exact = candidates is not None
    want = min(total, k * 4 + 16)
    while True:
        if not exact:
            candidates = store.search(vec.reshape(1, -1), want)[0]
        assert candidates is not None
        scored: list[tuple[float, float, float, TileRecord]] = []
        for rec, score in candidates:
            if min_score is not None and score < min_score:
                continue
            if keep is not None and not keep(rec):
                continue
            d = float(haversine_km(near.lat, near.lon, rec.center_lat, rec.center_lon))
            if near.radius_km is not None and d > near.radius_km:
                continue
            rank = score - near.weight * d / near.decay_km if near.decay_km else score
            scored.append((rank, score, d, rec))
        scored.sort(key=lambda t: -t[0])
        # Approximate path: a tile outside the candidates could still out-rank the last kept one after
        # the distance penalty only if its cosine beats the lowest candidate's; widen until it cannot.
        enough = len(scored) >= k and (not near.decay_km or scored[k - 1][0] >= candidates[-1][1])
        if exact or enough or want >= total:
            return [Hit(rank=i + 1, score=s, record=r, extra={"rank_score": round(rk, 6), "distance_km": round(d, 3)})
                    for i, (rk, s, d, r) in enumerate(scored[:k])]
        want = min(total, want * 4)
