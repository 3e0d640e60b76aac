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
from typing import TYPE_CHECKING, Any, Protocol

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
        #: names of the indexes that did not answer the last search (a shard restarting on a cluster)
        self.missing: list[str] = []

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
        per_store = self.each(lambda s: s.search(vectors, k, filter=filter))
        return self.merge(per_store, len(qs), int(k))

    def each(self, call: Callable[[Any], Any]) -> dict[int, Any]:
        """``call(store)`` for every index, by position (an :class:`IndexSet` on a cluster fans out in parallel
        and leaves out the shards that do not answer, naming them in ``missing``)."""
        return {i: call(s) for i, s in enumerate(self.stores)}

    def merge(self, per_store: dict[int, list[list[tuple[TileRecord, float]]]], n_queries: int,
              k: int) -> list[list[tuple[TileRecord, float]]]:
        """Each index's best-first hits (by index position) merged into the ``k`` best; a tile counts once."""
        out: list[list[tuple[TileRecord, float]]] = []
        for q in range(n_queries):
            merged: list[tuple[TileRecord, float]] = []
            seen: set[str] = set()
            ranked = heapq.merge(*[[(-score, i, rec) for rec, score in res[q]] for i, res in sorted(per_store.items())],
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


class IndexSet(Protocol):
    """Where the indexes of a multi-index search live: :meth:`open_set` gives a :class:`MultiStore` over
    them (in this process: :class:`LocalIndexes`; on a Ray cluster: ``backend.cluster.RayShards``)."""

    def open_set(self, paths: Sequence[str], *, force: bool = False) -> MultiStore: ...

    def release(self, multi: MultiStore) -> None: ...


class LocalIndexes:
    """Every index opened in this process by ``open_index`` (read-only); closed after the search if ``close``."""

    def __init__(self, open_index: Callable[[str], IndexStore], *, close: bool = True) -> None:
        self.open_index = open_index
        self.close = close

    def open_set(self, paths: Sequence[str], *, force: bool = False) -> MultiStore:
        stores: list[IndexStore] = []
        try:
            for p in paths:
                stores.append(self.open_index(p))
            return MultiStore(stores, force=force)
        except BaseException:
            if self.close:
                for s in stores:
                    s.close()
            raise

    def release(self, multi: MultiStore) -> None:
        if self.close:
            multi.close()


def set_search_ok(req: SearchRequest) -> bool:
    """Whether ``req`` can be answered by an :class:`IndexSet` (tile level; no rerank, within, scenes, near,
    date filters, other dates or score maps: those read one index's records)."""
    return not (req.level == "region" or req.rerank is not None or req.within is not None or req.scenes
                or req.near is not None or req.date_from or req.date_to or req.other_dates or req.score_map)


def search_indexes(req: SearchRequest, embedder: EmbedderLike,
                   indexes: IndexSet | Callable[[str], IndexStore], *, close: bool = True) -> SearchResponse:
    """Answer ``req`` over ``req.index`` and ``req.indexes`` through :func:`.run.search` (hits carry an
    ``index`` property). ``indexes``: an :class:`IndexSet`, or a function opening one index read-only
    (``close``: close them afterwards). Indexes that did not answer (a shard restarting) are named in
    ``missing`` with ``partial: true``."""
    from .run import search

    if not set_search_ok(req):
        raise InputError(f"region search, --rerank, --within, --scene, --near, --date-from/--date-to, --other-dates "
                         f"and --score-map take one index, not {1 + len(req.indexes)}",
                         "search the indexes one at a time")
    index_set: IndexSet = indexes if hasattr(indexes, "open_set") else LocalIndexes(indexes, close=close)  # type: ignore[arg-type,assignment]
    paths = list(dict.fromkeys([req.index, *req.indexes]))  # the same index twice counts once
    multi = index_set.open_set(paths, force=bool(getattr(req, "force", False)))
    try:
        if req.mode != "text" and not multi.same_tiling:
            raise InputError(f"{req.mode} queries across indexes need one tiling; these differ: "
                             + "; ".join(f"{s.path}: {(s.meta or {}).get('tiling')}" for s in multi.stores),
                             "search them by text, or one at a time")
        resp = search(multi, embedder, req)  # type: ignore[arg-type]
        for f in resp.features:
            f.properties["index"] = multi.index_of(f.properties["tile_id"])
        resp.query["indexes"] = [str(s.path) for s in multi.stores]
        if multi.missing:
            resp.partial = True
            resp.missing = list(dict.fromkeys(multi.missing))
        return resp
    finally:
        index_set.release(multi)
