"""What changed between two dates: co-located tiles of a *before* and an *after* set compared.

A side is an index (every scene in it) or a date / date range of scenes within an index
(``2016-01``, ``2016-01-01/2016-03-31``). Each after tile is matched to the before tile that
overlaps it most (the same grid gives identical footprints; other grids match by footprint
overlap, at least ``min_overlap`` intersection-over-union), and scored:

* ``change = 1 - cosine(before, after)`` (0: same content, up to 2);
* with ``to`` text: ``toward = cosine(after, text) - cosine(before, text)``, how much closer the
  place moved to the description ("new buildings"); pairs then rank by ``toward``.

Everything is checked before anything is written (:func:`plan_change`); :mod:`.change_out`
writes the maps and polygons.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError, ModelMismatchError, NotFoundError
from ..index import dates as idates
from ..index.files import SIDECAR
from ..raster.dates import SceneDate, date_range, parse_when
from ..types import TileRecord

if TYPE_CHECKING:
    from ..index.store import IndexStore

log = logging.getLogger(__name__)


@dataclass
class Side:
    """One side of a comparison: tiles (with vectors) of some scenes of one index."""

    spec: str  # what the user gave: an index path or a date range
    store: IndexStore
    scene_ids: list[str]
    records: list[TileRecord]
    vectors: np.ndarray
    dates: dict[str, SceneDate]  # scene_id -> date, for the side's dated scenes
    window: tuple[Any, Any] | None = None  # the date range asked for, if any

    @property
    def span(self) -> tuple[str, str] | None:
        return idates.span([self.dates[s] for s in self.scene_ids if s in self.dates])


@dataclass
class TilePair:
    before: TileRecord
    after: TileRecord
    overlap: float
    change: float
    toward: float | None = None
    before_vec: np.ndarray | None = field(default=None, repr=False)  # unit vectors
    after_vec: np.ndarray | None = field(default=None, repr=False)
    region: dict[str, Any] | None = None  # region level: the region's box and its geometry

    @property
    def key(self) -> float:
        return self.toward if self.toward is not None else self.change


@dataclass
class ChangeResult:
    before: Side
    after: Side
    pairs: list[TilePair]  # ranked: largest key first
    to: str | None = None
    unmatched_after: int = 0
    info: dict[str, Any] = field(default_factory=dict)


def is_index(text: str) -> bool:
    p = Path(text).expanduser()
    return p.is_dir() and (p / SIDECAR).exists()


def _side(spec: str, index: str | None, open_index: Callable[[str], IndexStore], what: str) -> Side:
    """The tiles ``spec`` names: an index directory, or a date range within ``index``."""
    if is_index(spec):
        store = open_index(str(Path(spec).expanduser().resolve()))
        ids = [s["scene_id"] for s in store.scenes()]
        window = None
    else:
        try:
            window = date_range(spec)
        except InputError:
            raise NotFoundError(f"--{what} {spec!r} is neither an index directory (no {SIDECAR}) nor a date",
                                "give an index directory, or a date such as 2016-01 with --index DIR") from None
        if index is None:
            raise InputError(f"--{what} {spec!r} is a date: the index holding that date is missing",
                             "add --index DIR (the index with scenes of both dates)")
        if not is_index(index):
            raise NotFoundError(f"--index {index!r} is not an index directory (no {SIDECAR})",
                                "give the index built with geovec index")
        store = open_index(str(Path(index).expanduser().resolve()))
        ids, undated = idates.scenes_between(store, spec.partition("/")[0], spec.partition("/")[2] or spec)
        if not ids:
            have = idates.span(idates.read(store).values())
            raise InputError(f"no scene of index {store.path} is dated {spec!r} (index dates: "
                             f"{'from ' + have[0] + ' to ' + have[1] if have else 'none recorded'}"
                             f"{f', {undated} scene(s) undated' if undated else ''})",
                             "pick dates from `geovec info`, or date scenes with geovec index --date/--date-from-name")
    dates = idates.read(store)
    recs, vecs = idates.scene_tiles(store, ids)
    if not recs:
        raise InputError(f"--{what} {spec!r} holds no tiles", "index the imagery of that date first")
    return Side(spec, store, ids, recs, vecs, {s: d for s, d in dates.items() if s in set(ids)}, window)


def _check_pair(b: Side, a: Side) -> None:
    """Bad pairs: another model or tiling, the same tiles twice, dates out of order."""
    from ..binding import check_identity, describe, recorded_identity

    if b.window is not None and a.window is not None and a.window[0] < b.window[1]:
        raise InputError(f"--before {b.spec!r} does not end before --after {a.spec!r} starts",
                         "give the earlier date as --before and the later one as --after, without overlap")
    if b.store.path == a.store.path and set(b.scene_ids) == set(a.scene_ids):
        raise InputError(f"--before {b.spec!r} and --after {a.spec!r} are the same scenes",
                         "compare two different dates or indexes")
    if b.store.path != a.store.path:
        mine, theirs = recorded_identity(b.store.meta or {}), recorded_identity(a.store.meta or {})
        try:
            check_identity(mine, theirs, index=str(b.store.path), dims=(int(b.store.dim), int(a.store.dim)))
        except ModelMismatchError as e:
            raise ModelMismatchError(f"--before {b.store.path} and --after {a.store.path} were built with different "
                                     f"models ({describe(mine)} vs {describe(theirs)}): their vectors do not compare",
                                     "index both dates with the same model") from e
        tb, ta = (b.store.meta or {}).get("tiling") or {}, (a.store.meta or {}).get("tiling") or {}
        keys = ("tile_size", "resolution", "bands")
        diff = [k for k in keys if tb.get(k) != ta.get(k)]
        if diff:
            raise InputError(f"--before {b.store.path} and --after {a.store.path} were tiled differently ("
                             + ", ".join(f"{k} {tb.get(k)} vs {ta.get(k)}" for k in diff) + ")",
                             "index both dates with the same --tile-size, --resolution and --bands")
    bs, as_ = b.span, a.span
    if bs and as_ and parse_when(as_[0]) <= parse_when(bs[1]):
        raise InputError(f"the dates do not order: --before {b.spec!r} runs to {bs[1]}, --after {a.spec!r} starts "
                         f"{as_[0]}", "give the earlier date as --before and the later one as --after")


def _boxes_in(records: list[TileRecord], crs_wkt: str) -> np.ndarray:
    """(n, 4) native bounds of ``records`` expressed in ``crs_wkt`` (bounding boxes of the reprojected tiles)."""
    from shapely.geometry import box

    from ..raster import geometry

    out = np.empty((len(records), 4), np.float64)
    for i, r in enumerate(records):
        if r.crs_wkt == crs_wkt:
            out[i] = r.bounds
        else:
            out[i] = geometry.reproject_geometry(box(*r.bounds), r.crs_wkt, crs_wkt).bounds
    return out


def match(before: list[TileRecord], after: list[TileRecord], min_overlap: float) -> list[tuple[int, int, float]]:
    """(before index, after index, IoU) for each after tile's best-overlapping before tile (IoU >= min_overlap)."""
    from shapely import STRtree, box

    out: list[tuple[int, int, float]] = []
    by_crs: dict[str, list[int]] = {}
    for j, r in enumerate(after):
        by_crs.setdefault(r.crs_wkt, []).append(j)
    for crs, js in by_crs.items():
        bb = _boxes_in(before, crs)
        geoms = [box(*row) for row in bb]
        tree = STRtree(geoms)
        for j in js:
            g = box(*after[j].bounds)
            best, best_iou = -1, 0.0
            for i in tree.query(g, predicate="intersects"):
                inter = geoms[int(i)].intersection(g).area
                union = geoms[int(i)].area + g.area - inter
                iou = inter / union if union > 0 else 0.0
                if iou > best_iou + 1e-12:
                    best, best_iou = int(i), iou
            if best >= 0 and best_iou >= min_overlap:
                out.append((best, j, float(best_iou)))
    return out


def unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-12)


def plan_change(before: str, after: str, *, index: str | None = None, min_overlap: float = 0.5,
                open_index: Callable[[str], IndexStore] | None = None) -> ChangeResult:
    """Pair and score the tiles of ``before`` and ``after`` (index paths or date ranges in ``index``).

    Raises:
        InputError / NotFoundError / ModelMismatchError: a bad side, a bad pair, or no overlap.
    """
    if not 0.0 < min_overlap <= 1.0:
        raise InputError(f"min_overlap {min_overlap} is not in (0, 1]", "give a fraction such as 0.5")
    if open_index is None:
        from ..index.store import IndexStore

        def open_index(p: str) -> IndexStore:
            return IndexStore.open(p)

    b = _side(before, index, open_index, "before")
    a = _side(after, index, open_index, "after")
    _check_pair(b, a)
    pairs_idx = match(b.records, a.records, min_overlap)
    if not pairs_idx:
        raise InputError(f"--before {before!r} and --after {after!r} share no place: none of the {len(a.records)} "
                         f"after tiles overlaps a before tile by {min_overlap:.0%} or more",
                         "compare dates of the same area (or lower --min-overlap)")
    bi = np.array([p[0] for p in pairs_idx])
    ai = np.array([p[1] for p in pairs_idx])
    vb, va = unit(b.vectors[bi]), unit(a.vectors[ai])
    change = 1.0 - np.sum(vb * va, axis=1)
    pairs = [TilePair(b.records[i], a.records[j], iou, float(change[k]), before_vec=vb[k], after_vec=va[k])
             for k, (i, j, iou) in enumerate(pairs_idx)]
    pairs.sort(key=lambda p: -p.key)
    res = ChangeResult(b, a, pairs, unmatched_after=len(a.records) - len(pairs))
    log.info("change %s -> %s: %d pairs, %d after tiles unmatched", before, after, len(pairs), res.unmatched_after)
    return res


def rescore_toward(res: ChangeResult, text_vec: np.ndarray, text: str) -> None:
    """Score every pair by how much closer its after vector is to ``text_vec`` than its before vector; re-rank."""
    t = unit(np.asarray(text_vec, np.float32).reshape(-1))
    if res.pairs and res.pairs[0].after_vec is not None and t.shape[0] != res.pairs[0].after_vec.shape[0]:
        raise InputError(f"the text vector has {t.shape[0]} dimensions, the index {res.pairs[0].after_vec.shape[0]}",
                         "embed the text with the index's model")
    for p in res.pairs:
        assert p.before_vec is not None and p.after_vec is not None
        p.toward = float(p.after_vec @ t - p.before_vec @ t)
    res.to = text
    res.pairs.sort(key=lambda p: -p.key)
