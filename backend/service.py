"""Service functions shared by the CLI and the HTTP routes.

Stable entry points (the server imports these; keep their signatures):

* :func:`load_model` - a cached :class:`Embedder` for a preset, path or hub id.
* :func:`model_for_index` - the Embedder an index was built with (sidecar checkpoint).
* :func:`open_index` - open an index read-only with clear errors (cached if asked).
* :func:`run_index` - index a folder (:class:`IndexRequest` -> :class:`IndexSummary`).
* :func:`run_search` - answer a :class:`SearchRequest` (-> :class:`SearchResponse`).
* :func:`index_info` - describe an index (-> :class:`IndexInfo`).

The loading functions live in :mod:`.loading` (the workflows use them too).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import NotFoundError
from .index.files import SIDECAR
from .loading import (
    EmbedderLike,
    load_model,
    model_for_index,
    open_index,
    read_sidecar,
    resolve_embedder,
    tiling_params,
)
from .schemas import IndexInfo, IndexRequest, IndexSummary, SearchRequest, SearchResponse

if TYPE_CHECKING:
    from .index.store import IndexStore
    from .indexing import ProgressEvent
    from .model.embedder import Embedder


__all__ = ["SIDECAR", "EmbedderLike", "index_info", "load_model", "model_for_index", "open_index", "read_sidecar",
           "resolve_embedder", "run_index", "run_search", "tiling_params"]

log = logging.getLogger(__name__)


def run_index(req: IndexRequest, embedder: EmbedderLike | None = None,
              progress: Callable[[ProgressEvent], None] | None = None,
              cancel: threading.Event | None = None, *, workers: int = 2) -> IndexSummary:
    """Index ``req.folder`` into ``req.index``.

    Args:
        req: the request (folder, index, tiling, groups, batch size).
        embedder: the model (or a callable giving it); None loads ``req.model``,
            else the index's recorded checkpoint.
        progress: called with a ProgressEvent after every batch.
        cancel: set it to stop after the current batch (summary.cancelled=True).
        workers: reader threads.
    """
    from .indexing import index_folder

    if not Path(req.folder).expanduser().is_dir():
        raise NotFoundError(f"folder {req.folder!r} does not exist or is not a folder",
                            "give a folder containing .tif/.tiff/.vrt rasters")
    emb = resolve_embedder(embedder, model=req.model, index=req.index)
    return index_folder(req.folder, req.index, emb, params=tiling_params(req.tiling), groups=req.groups,
                        batch_size=req.batch_size, workers=workers, progress=progress, cancel=cancel,
                        force=bool(getattr(req, "force", False)),
                        regions=req.regions, batch_tokens=req.batch_tokens)


def run_search(req: SearchRequest, embedder: EmbedderLike | None = None,
               store_cache: MutableMapping[str, IndexStore] | None = None) -> SearchResponse:
    """Answer ``req``. Input is validated (index, raster, box, CRS) before the model is resolved.

    Args:
        req: the query.
        embedder: an Embedder, a callable giving one (called only once input is
            valid), or None for the index's recorded model.
        store_cache: path -> open IndexStore, reused across calls (the server keeps one).
    """
    from .search import search, search_indexes

    def resolve() -> Embedder:  # called once the input is valid
        return resolve_embedder(embedder, model=None, index=req.index)

    if req.indexes:
        return search_indexes(req, resolve, lambda p: open_index(p, cache=store_cache), close=store_cache is None)
    store = open_index(req.index, cache=store_cache)
    try:
        return search(store, resolve, req)
    finally:
        if store_cache is None:
            store.close()


def index_info(path: str | Path) -> IndexInfo:
    """Describe the index at ``path`` (validates sidecar and files on the way)."""
    store = open_index(path)
    try:
        meta = dict(store.meta or {})
        scenes = store.scenes()
        known = {"count", "dim", "space", "preset", "checkpoint", "tiling", "created", "updated"}
        return IndexInfo(
            path=str(Path(path).expanduser().resolve()), count=int(store.count), dim=int(store.dim),
            space=str(meta.get("space", "cosine")), preset=str(meta.get("preset", "")),
            checkpoint=str(meta.get("checkpoint", "")), tiling=dict(meta.get("tiling") or {}),
            scenes=len(scenes), created=str(meta.get("created", "")), updated=str(meta.get("updated", "")),
            extra={**{k: v for k, v in meta.items() if k not in known},
                   "scene_list": [{"scene_id": s.get("scene_id"), "name": s.get("name"), "status": s.get("status")}
                                  for s in scenes]},
        )
    finally:
        store.close()
