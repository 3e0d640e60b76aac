"""Score maps: a query's similarity to every tile of a scene, painted as a styled GeoTIFF.

One raster per scene (the scene's grid, coarsened like the change maps) holding the cosine
similarity of the query vector to each tile; where the index stores regions, each region is
painted too at its own footprint (the larger value wins), so a small match shows at its size.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..index import dates as idates
from ..paths import make_folder
from .maps import Legend, safe_name, write_map

if TYPE_CHECKING:
    from ..index.store import IndexStore

log = logging.getLogger(__name__)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def write_score_maps(store: IndexStore, vector: np.ndarray, out: str | Path, *, labels: set[int] | None = None,
                     title: str = "query") -> list[dict[str, Any]]:
    """Write ``OUT/score_<scene>.tif`` (+ ``.qml``) for every scene with tiles in ``labels`` (all when None).

    Returns one entry per map: path, style, scene, tiles, min, max.
    """
    from ..raster import geometry

    root = Path(out)
    if root.exists() and not root.is_dir():
        raise InputError(f"score map folder {str(out)!r} is a file", "give a folder for the score maps")
    if labels is None:
        recs, vecs = idates.scene_tiles(store)
    else:
        vecs, got = store.tile_vectors(sorted(labels))
        by_label = store.records_by_label(got)
        recs = [by_label[lab] for lab in got]
    if not recs:
        raise InputError(f"no tile of index {store.path} to paint a score map for", "search over indexed imagery")
    q = _unit(np.asarray(vector, np.float32).reshape(-1))
    scores = _unit(vecs) @ q
    windows: dict[str, list[Any]] = {}
    values: dict[str, list[float]] = {}
    for r, s in zip(recs, scores.tolist(), strict=True):
        windows.setdefault(r.scene_id, []).append(r.window)
        values.setdefault(r.scene_id, []).append(float(s))
    lo, hi = float(scores.min()), float(scores.max())
    if store.regions_spec:
        tile_size = int(((store.meta or {}).get("tiling") or {}).get("tile_size", 256))
        label_of = store.tile_labels([r.tile_id for r in recs])
        rec_of = {label_of[r.tile_id]: r for r in recs if r.tile_id in label_of}
        rows, rvecs = store.regions_of(list(rec_of))
        if rows:
            rs = _unit(rvecs) @ q
            for row, s in zip(rows, rs.tolist(), strict=True):
                rec = rec_of[row.tile_label]
                c0, r0, c1, r1 = geometry.image_box_to_pixel_box(rec.window, tile_size, row.box)
                windows[rec.scene_id].append((int(c0), int(r0), max(1, round(c1 - c0)), max(1, round(r1 - r0))))
                values[rec.scene_id].append(float(s))
            lo, hi = min(lo, float(rs.min())), max(hi, float(rs.max()))
    if hi - lo < 1e-6:
        hi = lo + 1e-6
    legend = Legend(f"similarity to {title} (cosine)", round(lo, 4), round(hi, 4), "score", "least like", "most like")
    root = make_folder(root, "score map folder")
    out_maps = []
    for sid in sorted(windows):
        found = store.scene(sid)
        if found is None:
            continue
        scene = found[0]
        path = write_map(root / f"score_{safe_name(scene.name)}_{sid[:8]}.tif", scene, windows[sid], values[sid],
                         legend, description=f"similarity to {title}")
        vs = values[sid]
        out_maps.append({"path": str(path), "style": str(path.with_suffix(".qml")), "scene": scene.name,
                         "tiles": sum(1 for r in recs if r.scene_id == sid), "min": round(min(vs), 6),
                         "max": round(max(vs), 6)})
    log.info("wrote %d score map(s) under %s", len(out_maps), root)
    return out_maps
