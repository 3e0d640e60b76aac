"""Search several indexes built with the same model as one (an archive split by region or year).

:class:`MultiStore` offers the read side of :class:`~geovec.backend.index.store.IndexStore`
that queries use (``search``, ``count``, ``meta``, ``scenes``, ``scene``,
``scene_for_path``, ``regions_spec``), so :func:`.run.search` runs on it unchanged. ``search`` asks each
index for its own top ``k`` and merges them by cosine similarity (the global top ``k``
is always among them); a tile stored in two indexes counts once. Every index must
have the same model (dim, preset, checkpoint); box and point queries also need the
same tiling, since the query image is cut like the indexed tiles.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError, ModelMismatchError
from ..schemas import SearchRequest, SearchResponse
from ..types import Scene, Stretch, TileRecord

if TYPE_CHECKING:
    from ..index.store import IndexStore
    from ..loading import EmbedderLike


class MultiStore:
    """Read-only union of open IndexStores with one model (see the module docstring)."""

    def __init__(self, stores: Sequence[IndexStore], *, force: bool = False) -> None:
        if not stores:
            raise InputError("no index to search", "give at least one --index")
        from ..binding import check_identity, describe, recorded_identity

        first = stores[0]
        mine = recorded_identity(first.meta or {})
        for other in stores[1:]:
            theirs = recorded_identity(other.meta or {})
            try:
                check_identity(mine, theirs, index=str(first.path), force=force,
                               dims=(int(first.dim), int(other.dim)))
            except ModelMismatchError as e:
                raise ModelMismatchError(f"indexes built with different models cannot be searched together: "
                                         f"{other.path} holds {describe(theirs)}; {e.message}",
                                         "search together only indexes built with the same model") from e
            if mine.get("image") and theirs.get("image") and mine["image"] != theirs["image"]:
                raise ModelMismatchError(
                    f"index {other.path} embeds images as {theirs['image']}, index {first.path} as {mine['image']}: "
                    "their vectors do not compare", "search together only indexes built with the same image size")
        self.stores = list(stores)
        self.path = first.path
        self.dim = first.dim
        self._where: dict[str, str] = {}

    @property
    def meta(self) -> dict[str, Any]:
        return dict(self.stores[0].meta or {})

    @property
    def regions_spec(self) -> None:
        """Region search takes one index: a union of indexes offers tile hits only."""
        return None

    @property
    def count(self) -> int:
        return sum(int(s.count) for s in self.stores)

    @property
    def same_tiling(self) -> bool:
        tilings = [(s.meta or {}).get("tiling") for s in self.stores]
        return all(t == tilings[0] for t in tilings)

    def index_of(self, tile_id: str) -> str | None:
        """The index directory a hit of the last :meth:`search` came from."""
        return self._where.get(tile_id)

    def search(self, vectors: np.ndarray, k: int, *,
               filter: Callable[[str], bool] | None = None) -> list[list[tuple[TileRecord, float]]]:
        """The ``k`` most similar tiles over all indexes, best first (as ``IndexStore.search``).

        Vectors first: each index's ``k`` nearest labels are merged by distance and only the
        winners' records are read. A filter, or a winner deleted meanwhile, takes the full path
        (each index's own ``search``, then the merge).
        """
        qs = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if filter is None and len(qs) == 1:
            fast = self._search_one(qs, int(k))
            if fast is not None:
                return [fast]
        per_store = [s.search(vectors, k, filter=filter) for s in self.stores]
        out: list[list[tuple[TileRecord, float]]] = []
        for q in range(len(per_store[0])):
            merged: list[tuple[TileRecord, float]] = []
            seen: set[str] = set()
            ranked = heapq.merge(*[[(-score, i, rec) for rec, score in res[q]] for i, res in enumerate(per_store)],
                                 key=lambda t: (t[0], t[1]))
            for neg, i, rec in ranked:
                if rec.tile_id in seen:
                    continue
                seen.add(rec.tile_id)
                self._where[rec.tile_id] = str(self.stores[i].path)
                merged.append((rec, -neg))
                if len(merged) == k:
                    break
            out.append(merged)
        return out

    def _search_one(self, q: np.ndarray, k: int) -> list[tuple[TileRecord, float]] | None:
        found: list[tuple[float, int, int]] = []  # (distance, store, label)
        for i, s in enumerate(self.stores):
            labels, dists = s.nearest(q, k)
            found.extend((float(d), i, int(lab)) for lab, d in zip(labels[0].tolist(), dists[0].tolist(), strict=True))
        found.sort(key=lambda t: (t[0], t[1]))
        want = min(k, self.count)
        wins: dict[int, list[int]] = {}
        for _, i, lab in found[:want]:
            wins.setdefault(i, []).append(lab)
        recs = {i: self.stores[i].records(labs) for i, labs in wins.items()}
        out: list[tuple[TileRecord, float]] = []
        where: dict[str, str] = {}
        for dist, i, lab in found[:want]:
            rec = recs[i].get(lab)
            if rec is None or rec.tile_id in where:
                return None  # deleted since opened, or one tile in two indexes: the full path handles both
            where[rec.tile_id] = str(self.stores[i].path)
            out.append((rec, min(1.0, max(-1.0, 1.0 - dist))))
        self._where.update(where)
        return out

    def scenes(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        for s in self.stores:
            for row in s.scenes():
                if row["scene_id"] not in seen:
                    seen.add(row["scene_id"])
                    rows.append(row)
        return rows

    def scene(self, scene_id: str) -> tuple[Scene, Stretch] | None:
        for s in self.stores:
            got = s.scene(scene_id)
            if got is not None:
                return got
        return None

    def scene_for_path(self, path: Any) -> tuple[Scene, Stretch] | None:
        for s in self.stores:
            got = s.scene_for_path(path)
            if got is not None:
                return got
        return None

    def close(self) -> None:
        for s in self.stores:
            s.close()


def search_indexes(req: SearchRequest, embedder: EmbedderLike, open_index: Callable[[str], IndexStore], *,
                   close: bool = True) -> SearchResponse:
    """Answer ``req`` over ``req.index`` and ``req.indexes`` through :func:`.run.search` (hits carry an
    ``index`` property). ``open_index`` opens one index read-only; ``close``: close them afterwards."""
    from .run import search

    if req.level == "region" or req.rerank is not None or req.within is not None or req.scenes \
            or req.near is not None:
        raise InputError(f"region search, --rerank, --within, --scene and --near take one index, "
                         f"not {1 + len(req.indexes)}", "search the indexes one at a time")
    paths = list(dict.fromkeys([req.index, *req.indexes]))  # the same index twice counts once
    stores: list[IndexStore] = []
    try:
        for p in paths:
            stores.append(open_index(p))
        multi = MultiStore(stores, force=bool(getattr(req, "force", False)))
        if req.mode != "text" and not multi.same_tiling:
            raise InputError(f"{req.mode} queries across indexes need one tiling; these differ: "
                             + "; ".join(f"{s.path}: {(s.meta or {}).get('tiling')}" for s in stores),
                             "search them by text, or one at a time")
        resp = search(multi, embedder, req)  # type: ignore[arg-type]
        for f in resp.features:
            f.properties["index"] = multi.index_of(f.properties["tile_id"])
        resp.query["indexes"] = [str(s.path) for s in stores]
        return resp
    finally:
        if close:
            for s in stores:
                s.close()
