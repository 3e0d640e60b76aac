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
from typing import TYPE_CHECKING, Any

from .errors import InputError, NotFoundError
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
    from .types import Scene, Stretch


__all__ = ["SIDECAR", "EmbedderLike", "index_info", "load_model", "model_for_index", "open_index", "read_sidecar",
           "resolve_embedder", "run_index", "run_search", "tiling_params"]

log = logging.getLogger(__name__)


def run_index(req: IndexRequest, embedder: EmbedderLike | None = None,
              progress: Callable[[ProgressEvent], None] | None = None,
              cancel: threading.Event | None = None, *, workers: int = 2,
              files: list[str] | None = None) -> IndexSummary:
    """Index ``req.folder`` (a folder, or a raster file with ``files`` more of them) into ``req.index``.

    Args:
        req: the request (folder, index, tiling, groups, batch size).
        embedder: the model (or a callable giving it); None loads ``req.model``,
            else the index's recorded checkpoint.
        progress: called with a ProgressEvent after every batch.
        cancel: set it to stop after the current batch (summary.cancelled=True).
        workers: reader threads.
        files: more raster files to index with ``req.folder`` (then a file too); a run over files
            removes no other scene from the index.
    """
    from .indexing import index_folder

    paths = [req.folder, *(files or [])]
    for p in paths:
        if not Path(p).expanduser().exists():
            raise NotFoundError(f"{p!r} does not exist", "give a folder of rasters, or raster files")
    folder = Path(req.folder).expanduser()
    if folder.is_dir() and len(paths) > 1:
        raise InputError(f"{req.folder!r} is a folder; give one folder, or raster files",
                         "index the folder and the files in separate runs")
    emb = resolve_embedder(embedder, model=req.model, index=req.index)
    target: Any = req.folder if len(paths) == 1 else paths
    return index_folder(target, req.index, emb, params=tiling_params(req.tiling), groups=req.groups,
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


def scene_summary(row: dict[str, Any], stored: tuple[Scene, Stretch] | None, tiling: dict[str, Any]) -> dict[str, Any]:
    """One ``info`` scene entry (see :class:`~.schemas.IndexInfo`): CRS, extent, bands used, stretch, fill."""
    from .raster import geometry
    from .raster.tiling import GridSampler
    from .types import TilingParams

    out: dict[str, Any] = {"scene_id": row.get("scene_id"), "name": row.get("name"), "status": row.get("status"),
                           "tiles": row.get("tiles")}
    if stored is None:
        return out
    scene, stretch = stored
    try:
        crs = geometry.parse_crs(scene.crs_wkt)
        auth = crs.to_authority(min_confidence=90)
        bounds = geometry.window_bounds(scene, (0, 0, scene.width, scene.height))
        wgs = geometry.window_to_geometry(scene, (0, 0, scene.width, scene.height), "EPSG:4326").bounds
        windows = len(GridSampler(scene, TilingParams.from_dict(tiling)))
    except Exception as e:  # noqa: BLE001 - a scene info never fails the whole listing
        log.warning("scene %s: cannot describe it (%s)", row.get("name"), e)
        return out
    fill = stretch.to_dict().get("fill") or {"value": None, "source": "none", "fraction": None}
    out.update(crs=":".join(auth) if auth else crs.name, crs_wkt=scene.crs_wkt,
               extent=[round(v, 6) for v in bounds], extent_wgs84=[round(v, 7) for v in wgs],
               size=[scene.width, scene.height], bands_used=list(scene.rgb), dtype=scene.dtype,
               stretch={k: v for k, v in stretch.to_dict().items() if k != "fill"}, nodata=scene.nodata, fill=fill,
               tiles_skipped=max(0, windows - int(row.get("tiles") or 0)) if row.get("status") == "complete" else None)
    return out


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
                   "scene_list": [scene_summary(s, store.scene(str(s["scene_id"])), meta.get("tiling") or {})
                                  for s in scenes]},
        )
    finally:
        store.close()
