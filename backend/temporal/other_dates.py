"""Same place, other dates: for a hit, the co-located tiles of the other dated scenes with their scores.

A tile of another scene is "the same place" when its footprint overlaps the hit's by at least
``min_overlap`` (intersection over union, compared in the hit's CRS). Each comes with its date
(and the date's source) and its similarity to the query, oldest first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..raster.dates import SceneDate, parse_when
from ..types import TileRecord

if TYPE_CHECKING:
    from ..index.store import IndexStore


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def other_dates(store: IndexStore, hit: TileRecord, query: np.ndarray, dates: dict[str, SceneDate], *,
                min_overlap: float = 0.5) -> list[dict[str, Any]]:
    """The tiles of other scenes at ``hit``'s place: tile_id, scene, date, date source, score, overlap."""
    from shapely import wkt
    from shapely.geometry import box

    from ..raster import geometry

    area = wkt.loads(hit.footprint_wgs84)
    rows = store.labels_within(area.bounds, None)
    labels = [lab for lab, _ in rows]
    if not labels:
        return []
    recs = store.records_by_label(labels)
    cands = {lab: r for lab, r in recs.items() if r.scene_id != hit.scene_id}
    keep: list[tuple[int, TileRecord, float]] = []
    for lab, r in cands.items():
        b = r.bounds if r.crs_wkt == hit.crs_wkt else \
            geometry.reproject_geometry(box(*r.bounds), r.crs_wkt, hit.crs_wkt).bounds
        iou = _iou(tuple(hit.bounds), tuple(b))
        if iou >= min_overlap:
            keep.append((lab, r, iou))
    if not keep:
        return []
    vecs, got = store.tile_vectors([lab for lab, _, _ in keep])
    q = np.asarray(query, np.float32).reshape(-1)
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    score = {lab: float(v @ q / max(float(np.linalg.norm(v)), 1e-12)) for lab, v in zip(got, vecs, strict=True)}
    out: list[dict[str, Any]] = []
    for lab, r, iou in keep:
        d = dates.get(r.scene_id)
        out.append({"tile_id": r.tile_id, "scene_id": r.scene_id, "source": r.sources[0] if r.sources else None,
                    "acquired": d.acquired if d else None, "date_source": d.source if d else None,
                    "score": round(score.get(lab, float("nan")), 6), "overlap": round(iou, 4),
                    "window": list(r.window)})
    out.sort(key=lambda x: (x["acquired"] is None, str(parse_when(x["acquired"])) if x["acquired"] else "",
                            x["tile_id"]))
    return out
