"""Region-level change: the stored region candidates of each matched tile pair compared box by box.

Indexes that store regions (``geovec index --regions``) hold, per tile, candidate boxes in the
model image's pixels with a vector each. Two co-located tiles of the same tiling share the same
candidate boxes, so regions pair by box; each region pair is scored like a tile pair and painted at
its own footprint, which localises a change inside a tile.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from .change import ChangeResult, TilePair, unit


def _regions(store: Any, tile_ids: list[str]) -> dict[str, dict[tuple[float, ...], np.ndarray]]:
    """tile_id -> {rounded box: unit vector} of the stored regions of ``tile_ids``."""
    labels = store.tile_labels(tile_ids)
    by_label = {lab: tid for tid, lab in labels.items()}
    rows, vecs = store.regions_of(list(labels.values()))
    out: dict[str, dict[tuple[float, ...], np.ndarray]] = {}
    for row, v in zip(rows, unit(vecs) if len(rows) else vecs, strict=True):
        out.setdefault(by_label[row.tile_label], {})[tuple(round(float(x), 2) for x in row.box)] = v
    return out


def region_pairs(res: ChangeResult) -> ChangeResult:
    """``res`` with one pair per matched region box (tile pairs without common boxes are dropped).

    Raises:
        InputError: a side's index stores no regions.
    """
    from ..raster import geometry

    for side, what in ((res.before, "before"), (res.after, "after")):
        if not side.store.regions_spec:
            raise InputError(f"--level region: the {what} index {side.store.path} stores no regions",
                             "index it with geovec index --regions, or compare at tile level")
    if res.pairs and res.pairs[0].region is not None:
        return res
    tile_size = int(((res.after.store.meta or {}).get("tiling") or {}).get("tile_size", 256))
    before = _regions(res.before.store, [p.before.tile_id for p in res.pairs])
    after = _regions(res.after.store, [p.after.tile_id for p in res.pairs])
    scenes: dict[str, Any] = {}
    out: list[TilePair] = []
    for p in res.pairs:
        rb, ra = before.get(p.before.tile_id, {}), after.get(p.after.tile_id, {})
        for box in sorted(set(rb) & set(ra)):
            vb, va = rb[box], ra[box]
            sid = p.after.scene_id
            if sid not in scenes:
                got = res.after.store.scene(sid)
                scenes[sid] = got[0] if got else None
            scene = scenes[sid]
            if scene is None:
                continue
            c0, r0, c1, r1 = geometry.image_box_to_pixel_box(p.after.window, tile_size, box)
            win = (int(c0), int(r0), max(1, round(c1 - c0)), max(1, round(r1 - r0)))
            geom = geometry.image_box_to_geometry(scene, p.after.window, tile_size, box, "EPSG:4326")
            out.append(TilePair(p.before, p.after, p.overlap, float(1.0 - vb @ va), None, vb, va,
                                region={"box": list(box), "window": win, "wkt": geom.wkt}))
    if not out:
        raise InputError("--level region: the matched tiles share no region boxes (different region specs or "
                         "tilings)", "compare at tile level, or index both with the same --regions SPEC")
    out.sort(key=lambda q: -q.key)
    res.pairs = out
    res.info["level"] = "region"
    return res
