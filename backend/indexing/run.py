"""Index a folder of rasters: scan -> plan -> read + preprocess -> embed -> write, in this process.

:func:`index_folder` opens the index, plans the scenes (:mod:`.plan`) and runs the
stages (:mod:`.stages`) with a bounded number of batches in flight, so memory stays
flat however large the folder is. Another :data:`StageRunner` (Ray:
:class:`~geovec.backend.indexing.ray_engine.RayRunner`) can run the same stages instead.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, NotFoundError
from ..schemas import FileError, IndexSummary
from ..types import TilingParams
from .plan import ScenePlan, iter_batches, plan_scenes
from .region_stage import RegionMaker, embed_regions
from .stages import (
    PreparedBatch,
    ProgressEvent,
    RunProgress,
    TileReader,
    TileWriter,
    embed_batch,
    torch_threads,
)

if TYPE_CHECKING:
    from ..index.store import IndexStore
    from ..model.embedder import Embedder

log = logging.getLogger(__name__)


#: ``(store, embedder, plans, params, batch_size, workers, cancel, progress, summary) -> None``: runs
#: read -> embed -> write for the planned scenes, updating ``progress`` and ``summary``.
StageRunner = Callable[["IndexStore", Any, Sequence[ScenePlan], TilingParams, int, int, threading.Event,
                        RunProgress, IndexSummary], None]


def _open_store(index_path: str | Path, embedder: Embedder, params: TilingParams, *,
                force: bool = False) -> IndexStore:
    from ..index.store import IndexStore

    store = IndexStore.open_or_create(
        index_path, dim=embedder.dim, preset=embedder.preset.name, checkpoint=embedder.checkpoint_id,
        tiling=params.to_dict(), model=embedder.identity, force=force,
    )
    stored = (store.meta or {}).get("tiling")
    if stored and TilingParams.from_dict(stored) != params:
        store.close()
        raise InputError(
            f"index {index_path} was built with tiling {stored}, not {params.to_dict()}",
            "index with the same --tile-size/--overlap/--resolution/--min-valid/--bands, or use a new --index",
        )
    return store


def batch_for_tokens(embedder: Embedder, tile_size: int, batch_tokens: int, *, default: int) -> int:
    """Tiles per batch so that a batch holds about ``batch_tokens`` tokens (1..1024)."""
    counter = getattr(embedder, "tokens_per_image", None)
    if counter is None:
        return default
    per = int(counter(tile_size, tile_size)) + 16  # + the prompt's text
    n = max(1, min(1024, int(batch_tokens) // per))
    log.info("%d tiles per batch (%d tokens each, budget %d)", n, per, batch_tokens)
    return n


def index_folder(
    folder: str | Path | Sequence[str | Path],
    index_path: str | Path,
    embedder: Embedder,
    *,
    params: TilingParams,
    groups: dict[str, list[str]] | None = None,
    batch_size: int = 16,
    workers: int = 2,
    progress: Callable[[ProgressEvent], None] | None = None,
    cancel: threading.Event | None = None,
    force: bool = False,
    runner: StageRunner | None = None,
    regions: str | None = None,
    batch_tokens: int | None = None,
    date: str | None = None,
    date_from_name: str | None = None,
) -> IndexSummary:
    """Index (or update) every raster under ``folder`` into the index at ``index_path``.

    Args:
        folder: folder scanned recursively for .tif/.tiff/.vrt; or one raster file, or a list of them
            (grouped into scenes like a folder's files; nothing else in the index is removed).
        index_path: index directory (created if absent).
        embedder: the model; its preset/checkpoint must match an existing index.
        params: tiling parameters (must equal the index's for an existing index).
        groups: explicit scene name -> band files, on top of automatic grouping.
        batch_size: tiles per forward pass.
        workers: threads reading tiles and running the processor.
        progress: called with a :class:`ProgressEvent` after every batch.
        cancel: when set, the current batch is finished and written, the index
            checkpointed, and the summary returned with ``cancelled=True``.
        force: add to an index built with another model (same dimension) anyway.
        runner: runs read -> embed -> write for the planned scenes (default: this
            process, a thread pool for reads; :mod:`geovec.backend.indexing.ray_engine` runs
            them as Ray Data stages). ``embedder`` then only needs ``dim``, ``preset``,
            ``checkpoint_id``, ``identity`` and ``with_image`` (see ``RemoteModel``).
        regions: a region SPEC (see :class:`~geovec.backend.regions.RegionSpec`; '' = the
            default) to store candidate region vectors too; None keeps the index's own
            (an index without regions stays without). Tiles already stored get theirs.
            Regions are embedded by the in-process runner only.
        batch_tokens: size batches by token count instead: as many tiles per forward as fit
            this many image + prompt tokens (a GPU stays busy with small images and does not
            run out of memory with large ones); overrides ``batch_size``.
        date: acquisition date of every scene scanned (overrides what is found; see
            :mod:`geovec.backend.raster.dates`); ``date_from_name``: a pattern such as ``%Y%m%d``
            that finds it in file names. Without either, scenes get the date found in their
            metadata or names, once.

    Returns:
        An :class:`IndexSummary`; per-file problems are in ``errors``.
    """
    from ..index.dates import check_date_options, date_scenes
    from ..raster.scan import scan_files, scan_folder
    from ..regions import RegionSpec
    from .region_stage import setup_regions

    t0 = time.monotonic()
    if regions is not None:
        RegionSpec.parse(regions)  # bad input fails before the index is touched
    check_date_options(date, date_from_name)
    items = [folder] if isinstance(folder, (str, Path)) else list(folder)
    root: Path | None = None
    if len(items) == 1 and Path(items[0]).expanduser().is_dir():
        root = Path(items[0]).expanduser().resolve()
        scan = scan_folder(root, groups=groups, bands=params.bands)
    elif not items or (len(items) == 1 and not Path(items[0]).expanduser().exists()):
        raise NotFoundError(f"{str(items[0]) if items else 'no path'!r} does not exist",
                            "give a folder containing .tif/.tiff/.vrt rasters, or raster files")
    else:  # raster files: index these, remove nothing else
        scan = scan_files(items, groups=groups, bands=params.bands)
    cancel = cancel or threading.Event()
    summary = IndexSummary(errors=[FileError(path=p, error=r) for p, r in scan.errors])
    error_paths = {str(Path(p).resolve()) for p, _ in scan.errors}

    store = _open_store(index_path, embedder, params, force=force)
    image = (store.meta.get("model") or {}).get("image")
    if isinstance(image, dict) and image != embedder.identity.get("image"):
        log.info("embedding at the index's image size %s", image)
        embedder = embedder.with_image(image)
    if batch_tokens:
        batch_size = batch_for_tokens(embedder, params.tile_size, batch_tokens, default=batch_size)
    try:
        maker = setup_regions(store, embedder, regions, params.tile_size)
        if maker is not None and runner is not None:
            raise InputError(f"index {index_path} stores regions, which this runner does not embed",
                             "index it in one process (without the distributed runner)")
        plan = plan_scenes(store, scan.scenes, params, folder=root, keep_paths=error_paths,
                           errors=summary.errors, keep_folders=scan.unreadable, seen=scan.seen)
        summary.scenes_skipped_unchanged = plan.unchanged
        date_scenes(store, scan.scenes, date=date, pattern=date_from_name)
        summary.scenes_removed = plan.removed
        total = sum(len(p.windows) + len(p.backfill) for p in plan.scenes)
        prog = RunProgress(total, len(plan.scenes), progress)
        prog.emit(None, f"{len(plan.scenes)} scene(s), {total} tile(s) to index")
        run = runner or functools.partial(_run_stages, maker=maker)
        with torch_threads(embedder, workers):
            run(store, embedder, plan.scenes, params, batch_size, workers, cancel, prog, summary)
        summary.cancelled = cancel.is_set()
        store.checkpoint()
        prog.emit(None, "cancelled" if summary.cancelled else "done")
    finally:
        store.close()
    summary.seconds = round(time.monotonic() - t0, 3)
    return summary


@contextmanager
def reader_pool(reader: TileReader, workers: int) -> Iterator[ThreadPoolExecutor]:
    """The read + prepare thread pool; on exit the reader's open datasets are closed."""
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="geovec-read") as pool:
            yield pool
    finally:
        reader.close()


def _run_stages(store: IndexStore, embedder: Embedder, plans: Sequence[ScenePlan], params: TilingParams,
                batch_size: int, workers: int, cancel: threading.Event, prog: RunProgress,
                summary: IndexSummary, maker: RegionMaker | None = None) -> None:
    """Run read+prepare in a pool, forward on this thread, write in order, with bounded prefetch."""
    reader = TileReader(embedder, params, regions=maker)
    writer = TileWriter(store)
    failed: set[str] = set()
    counted: set[str] = set()
    jobs = iter_batches(plans, batch_size)
    pending: deque[Future[PreparedBatch]] = deque()
    max_pending = max(2, workers * 2)
    with reader_pool(reader, workers) as pool:
        def fill() -> None:
            while len(pending) < max_pending and not cancel.is_set():
                job = next(jobs, None)
                if job is None:
                    return
                pending.append(pool.submit(reader, job))

        fill()
        while pending:
            batch = pending.popleft().result()
            scene = batch.job.plan.scene
            if scene.scene_id in failed:
                prog.done += len(batch.job.windows)
                fill()
                continue
            if batch.error is not None:
                failed.add(scene.scene_id)
                summary.errors.append(FileError(path=",".join(scene.sources), error=batch.error))
                log.warning("scene %s: %s", scene.name, batch.error)
                prog.done += len(batch.job.windows)
                fill()
                continue
            regions = embed_regions(embedder, batch.regions) if batch.regions else None
            backfill = batch.job.tile_ids is not None  # regions of tiles already stored
            if backfill and regions:
                summary.regions += store.add_regions(
                    [(t, b, v) for t, (b, v) in zip(batch.job.tile_ids or [], regions, strict=True)])
            elif batch.records:
                vectors = embed_batch(embedder, batch.features)
                writer.write(batch.records, vectors, regions)
                summary.regions += sum(len(b) for b, _ in regions or [])
            n = len(batch.job.windows)
            tiles = 0 if backfill else len(batch.records)
            prog.done += n
            prog.embedded += tiles
            prog.skipped += batch.skipped
            summary.tiles += tiles
            summary.tiles_skipped += batch.skipped
            if scene.scene_id not in counted and not backfill:
                counted.add(scene.scene_id)
                summary.scenes += 1
            if batch.job.last:
                writer.complete(scene.scene_id)
                prog.scenes_done += 1
            prog.emit(scene.sources[0] if scene.sources else scene.name)
            if cancel.is_set():
                for f in pending:
                    f.cancel()
                pending.clear()
                break
            fill()
    writer.checkpoint()
