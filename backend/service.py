"""Service functions shared by the CLI and the HTTP routes.

Stable entry points (the server imports these; keep their signatures):

* :func:`load_model` - a cached :class:`Embedder` for a preset, path or hub id.
* :func:`model_for_index` - the Embedder an index was built with (sidecar checkpoint).
* :func:`open_index` - open an index read-only with clear errors (cached if asked).
* :func:`run_index` - index a folder (:class:`IndexRequest` -> :class:`IndexSummary`).
* :func:`run_search` - answer a :class:`SearchRequest` (-> :class:`SearchResponse`).
* :func:`index_info` - describe an index (-> :class:`IndexInfo`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from .errors import InputError, ModelMismatchError, ModelUnavailableError, NotFoundError
from .index import files
from .index.files import SIDECAR
from .schemas import IndexInfo, IndexRequest, IndexSummary, SearchRequest, SearchResponse
from .types import TilingParams

if TYPE_CHECKING:
    from .index.store import IndexStore
    from .indexing import ProgressEvent
    from .model.embedder import Embedder

log = logging.getLogger(__name__)

_models: dict[tuple[str, str, str | None, str, int | None], Embedder] = {}
_models_lock = threading.Lock()

#: An Embedder, or a zero-argument callable giving one (loaded only when needed).
EmbedderLike = Union["Embedder", Callable[[], "Embedder"]]


def load_model(spec: str, *, device: str = "auto", preset: str | None = None, dtype: str = "auto",
               image_size: int | None = None) -> Embedder:
    """Load (once per process) the model named by ``spec``: preset name, local dir or hub id."""
    from .model.embedder import load_embedder

    key = (spec, device, preset, dtype, image_size)
    with _models_lock:
        if key not in _models:
            _models[key] = load_embedder(spec, device=device, preset=preset, dtype=dtype, image_size=image_size)
        return _models[key]


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The validated index sidecar (index.json); NotFoundError / IndexCorruptError with hints."""
    return files.read_index_sidecar(path)


def model_for_index(path: str | Path, *, model: str | None = None, device: str = "auto",
                    dtype: str = "auto") -> Embedder:
    """The Embedder to query the index at ``path`` with.

    ``model`` overrides the checkpoint recorded in the sidecar; either way the
    loaded model's dimension must match the index (else ModelMismatchError).
    """
    meta = read_sidecar(path)
    spec = model or meta.get("checkpoint") or meta.get("preset")
    if not spec:
        raise ModelUnavailableError(f"index {path} records no model checkpoint",
                                    "pass --model PATH_OR_ID_OR_PRESET")
    preset = meta.get("preset") if model is None else None
    try:
        emb = load_model(str(spec), device=device, preset=preset, dtype=dtype)
    except ModelUnavailableError as e:
        if model is None:
            raise ModelUnavailableError(
                f"the model this index was built with ({spec}) cannot be loaded: {e.message}",
                "pass --model with a local copy of it") from e
        raise
    dim = meta.get("dim")
    if dim is not None and int(dim) != int(emb.dim):
        raise ModelMismatchError(f"model {spec} gives {emb.dim}-d vectors but index {path} holds {dim}-d ones",
                                 f"query with the index's model ({meta.get('checkpoint')})")
    image = (meta.get("model") or {}).get("image")
    return emb.with_image(image) if isinstance(image, dict) and image != emb.identity.get("image") else emb


def open_index(path: str | Path, *, cache: MutableMapping[str, IndexStore] | None = None) -> IndexStore:
    """Open the index at ``path`` read-only (reused from ``cache`` when given)."""
    key = str(Path(path).expanduser().resolve())
    if cache is not None and key in cache:
        return cache[key]
    from .index.store import IndexStore

    store = IndexStore.open(key, writable=False)
    if cache is not None:
        cache[key] = store
    return store


def tiling_params(opts: Any) -> TilingParams:
    """TilingParams from :class:`TilingOptions` (or any object with the same fields)."""
    return TilingParams.from_options(opts)


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
    emb = _resolve_embedder(embedder, model=req.model, index=req.index)
    return index_folder(req.folder, req.index, emb, params=tiling_params(req.tiling), groups=req.groups,
                        batch_size=req.batch_size, workers=workers, progress=progress, cancel=cancel,
                        force=bool(getattr(req, "force", False)),
                        regions=req.regions, batch_tokens=req.batch_tokens)


def _resolve_embedder(embedder: EmbedderLike | None, *, model: str | None, index: str) -> Embedder:
    if embedder is not None:
        return embedder() if callable(embedder) and not hasattr(embedder, "encode") else embedder  # type: ignore[return-value]
    if model:
        return load_model(model)
    if (Path(index).expanduser() / SIDECAR).exists():
        return model_for_index(index)
    raise InputError("no model given for a new index", "pass --model PATH_OR_ID_OR_PRESET (e.g. a tiny model dir)")


def run_search(req: SearchRequest, embedder: EmbedderLike | None = None,
               store_cache: MutableMapping[str, IndexStore] | None = None) -> SearchResponse:
    """Answer ``req``. Input is validated (index, raster, box, CRS) before the model is resolved.

    Args:
        req: the query.
        embedder: an Embedder, a callable giving one (called only once input is
            valid), or None for the index's recorded model.
        store_cache: path -> open IndexStore, reused across calls (the server keeps one).
    """
    from .binding import bind
    from .region_search import check, run
    from .search import build_query

    if req.indexes:
        from .multi import search_indexes

        if req.level == "region" or req.rerank is not None or req.within is not None or req.scenes:
            raise InputError(f"region search, --rerank, --within and --scene take one index, not {1 + len(req.indexes)}",
                             "search the indexes one at a time")

        return search_indexes(req, embedder, store_cache, resolve=_resolve_embedder, open_index=open_index)
    store = open_index(req.index, cache=store_cache)
    try:
        query = build_query(store, req)
        flt = check(store, req)
        emb = _resolve_embedder(embedder, model=None, index=req.index)
        emb = bind(emb, store.meta, index=str(req.index), force=bool(getattr(req, "force", False)))
        return run(store, emb, query, req, flt)
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
