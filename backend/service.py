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
    import numpy as np

    from .index.store import IndexStore
    from .indexing import ProgressEvent
    from .model.embedder import Embedder
    from .schemas_change import ChangeRequest, ChangeResponse
    from .search import IndexSet
    from .types import Scene, Stretch


__all__ = ["SIDECAR", "EmbedderLike", "index_info", "load_model", "model_for_index", "open_index", "read_sidecar",
           "resolve_embedder", "run_change", "run_index", "run_search", "tiling_params"]

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
                        regions=req.regions, batch_tokens=req.batch_tokens, date=req.date,
                        date_from_name=req.date_from_name)


def run_search(req: SearchRequest, embedder: EmbedderLike | None = None,
               store_cache: MutableMapping[str, IndexStore] | None = None,
               index_set: IndexSet | None = None) -> SearchResponse:
    """Answer ``req``. Input is validated (index, raster, box, CRS) before the model is resolved.

    Args:
        req: the query.
        embedder: an Embedder, a callable giving one (called only once input is
            valid), or None for the index's recorded model.
        store_cache: path -> open IndexStore, reused across calls (the server keeps one).
        index_set: where the indexes live when not in this process (``backend.cluster.RayShards``):
            every request it can answer (tile level, no rerank/within/scenes/near) goes to it, one
            index or several; the others open their one index here.
    """
    from .search import search, search_indexes, set_search_ok

    def resolve() -> Embedder:  # called once the input is valid
        return resolve_embedder(embedder, model=None, index=req.index)

    if index_set is not None and set_search_ok(req):
        return search_indexes(req, resolve, index_set)
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
        from .index.dates import read as read_dates
        from .index.dates import span

        dates = read_dates(store)
        first_last = span(dates.values())
        known = {"count", "dim", "space", "preset", "checkpoint", "tiling", "created", "updated"}
        return IndexInfo(
            path=str(Path(path).expanduser().resolve()), count=int(store.count), dim=int(store.dim),
            space=str(meta.get("space", "cosine")), preset=str(meta.get("preset", "")),
            checkpoint=str(meta.get("checkpoint", "")), tiling=dict(meta.get("tiling") or {}),
            scenes=len(scenes), created=str(meta.get("created", "")), updated=str(meta.get("updated", "")),
            extra={**{k: v for k, v in meta.items() if k not in known},
                   "scene_list": [scene_summary(s, store.scene(str(s["scene_id"])), meta.get("tiling") or {})
                                  | {"acquired": dates[s["scene_id"]].acquired if s.get("scene_id") in dates else None,
                                     "date_source": dates[s["scene_id"]].source if s.get("scene_id") in dates else None}
                                  for s in scenes],
                   "dates": {"first": first_last[0], "last": first_last[1], "dated": len(dates),
                             "undated": len(scenes) - len(dates)} if first_last else None},
        )
    finally:
        store.close()


def text_vector(embedder: Any, text: str) -> np.ndarray:
    """``text`` embedded as a text query (the same instruction a text search uses)."""
    import numpy as np

    from .search import Query

    q = Query("text", "text_query", text=text)
    return np.asarray(embedder.encode([q.embed_input(embedder)], batch_size=1)[0], np.float32)


def run_change(req: ChangeRequest, embedder: Any = None,
               store_cache: MutableMapping[str, IndexStore] | None = None) -> ChangeResponse:
    """Compare ``req.before`` with ``req.after`` and write the results under ``req.out``.

    ``embedder`` (an Embedder or a callable giving one) embeds ``req.to``; None loads the index's model.
    Nothing is written unless every check passes.
    """
    from .schemas_change import ChangeResponse
    from .temporal.change import plan_change, rescore_toward
    from .temporal.change_out import features, write_change
    from .temporal.regions_change import region_pairs

    opened: list[IndexStore] = []

    def _open(p: str) -> IndexStore:
        s = open_index(p, cache=store_cache)
        opened.append(s)
        return s

    try:
        out = Path(req.out)
        if out.exists() and not out.is_dir():
            raise InputError(f"out {req.out!r} is a file", "give a folder for the change maps")
        res = plan_change(req.before, req.after, index=req.index, min_overlap=req.min_overlap, open_index=_open)
        if req.level == "region":
            res = region_pairs(res)  # InputError when an index has no stored regions
        if req.to is not None:
            from .binding import bind

            emb = embedder() if callable(embedder) and not hasattr(embedder, "encode") else embedder
            if emb is None:
                emb = model_for_index(res.after.store.path)
            emb = bind(emb, res.after.store.meta, index=str(res.after.store.path))
            rescore_toward(res, text_vector(emb, req.to), req.to)
        written = write_change(res, out, gpkg=req.gpkg)
        return ChangeResponse(
            before=req.before, after=req.after, level=req.level, to=req.to, pairs=len(res.pairs),
            unmatched_after=res.unmatched_after, before_dates=list(res.before.span or []),
            after_dates=list(res.after.span or []), geojson=written["geojson"], gpkg=written.get("gpkg"),
            maps=written["maps"], top=features(res, top=req.top))
    finally:
        if store_cache is None:
            for s in opened:
                s.close()
