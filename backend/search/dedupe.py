"""Byte-identical tiles are one hit: tiles whose images are the same (fill the scene's nodata and collar
detection missed, saturated or constant areas, a scene indexed twice under two names) embed to the same
vector and score the same, so a ranking would show them as a block of equal hits. The best-ranked one
stays, with ``duplicates`` (the tile ids of the others) among its properties. Tiles of scenes acquired on
different dates are never folded: the same pixels at another date are the same place at another time, an
answer of its own (an unchanged place in a time series)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..index.store import IndexStore
    from ..types import Hit

#: Hits are compared only when their scores agree to this much, and are the same when their vectors do.
SCORE_TOL = 1e-6
VECTOR_TOL = 1e-6


def collapse_duplicates(store: IndexStore, hits: list[Hit], k: int) -> list[Hit]:
    """The first ``k`` of ``hits`` (best first) with identical tiles folded into the best-ranked of them."""
    out: list[Hit] = []
    unit: dict[str, np.ndarray] = {}
    dates: dict[str, str] | None = None

    def date(h: Hit) -> str | None:
        nonlocal dates
        if dates is None:  # read once, and only when two hits score the same
            from ..index.dates import read

            dates = {sid: d.acquired for sid, d in read(store).items()}
        return dates.get(h.record.scene_id)

    def vec(h: Hit) -> np.ndarray:
        tid = h.record.tile_id
        if tid not in unit:
            v = np.asarray(store.vector(tid), dtype=np.float64)
            unit[tid] = v / max(float(np.linalg.norm(v)), 1e-12)
        return unit[tid]

    for h in hits:
        same = None
        for kept in reversed(out):
            if abs(kept.score - h.score) > SCORE_TOL:
                break
            if float(vec(kept) @ vec(h)) >= 1.0 - VECTOR_TOL and date(kept) == date(h):
                same = kept
                break
        if same is not None:
            same.extra.setdefault("duplicates", []).append(h.record.tile_id)
            continue
        if len(out) == k:
            break
        out.append(h)
    for i, h in enumerate(out):
        h.rank = i + 1
    return out
