"""Index a folder of rasters: list windows -> read + preprocess -> embed -> write.

The stages are small, separately callable pieces so a later runner (Ray Data, a
multi-GPU job) can reuse them unchanged:

* :func:`plan_scenes` decides per scene what to do (skip / resume / re-embed /
  delete) and lists the windows still missing (:class:`ScenePlan`).
* :func:`iter_batches` cuts the planned windows into :class:`BatchJob` s.
* :class:`TileReader` reads one batch (windowed reads, stretch, valid-fraction
  filter) **and** runs the model's processor on it (``Embedder.prepare``); it is
  thread-safe and runs in a worker pool, so the main thread only runs
  ``forward``.
* :func:`embed_batch` runs the model; :class:`TileWriter` adds vectors to the
  :class:`~geovec.backend.index.store.IndexStore` and checkpoints.

:func:`index_folder` wires them with a bounded number of batches in flight, so
memory stays flat however large the folder is.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import GeoVecError, InputError, NotFoundError
from .pipeline_regions import RegionMaker, embed_regions
from .schemas import FileError, IndexSummary
from .types import EmbedInput, Scene, Stretch, TileRecord, TilingParams, Window

if TYPE_CHECKING:
    from .index.store import IndexStore
    from .model.embedder import Embedder

log = logging.getLogger(__name__)

#: Seconds between periodic hnsw checkpoints while indexing (at least).
CHECKPOINT_EVERY_S = 30.0
#: The interval is also at least this many times the last checkpoint's duration (<= ~5 % of the run).
CHECKPOINT_COST_RATIO = 20.0


def cpu_threads(workers: int) -> int:
    """Torch intra-op threads beside ``workers`` reader threads: the cores the readers leave free."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores - max(0, workers))


#: A CPU model at least this large keeps all cores while indexing (see :func:`torch_threads`).
LARGE_MODEL_PARAMS = 50_000_000


def _parameters(embedder: Any) -> int:
    model = getattr(embedder, "model", None)
    try:
        return sum(p.numel() for p in model.parameters()) if model is not None else 0
    except (AttributeError, TypeError):  # a remote or stand-in model
        return 0


@contextmanager
def torch_threads(embedder: Any, workers: int) -> Iterator[None]:
    """On a small CPU model, run torch on the cores the reader pool leaves free (restored afterwards).

    The model's intra-op threads and the reader threads otherwise oversubscribe the
    cores (OpenMP threads spin while readers wait). A large model (a 2B checkpoint:
    seconds per tile against milliseconds per read) keeps every core: its readers fill
    their bounded queue and sleep, and one thread fewer would slow the forward by half
    on a 2-core laptop. Untouched on a GPU, when torch is not loaded, or when
    ``OMP_NUM_THREADS`` pins the count.
    """
    import sys

    torch = sys.modules.get("torch")
    device = getattr(embedder, "device", None)
    if torch is None or getattr(device, "type", None) != "cpu" or os.environ.get("OMP_NUM_THREADS") \
            or _parameters(embedder) >= LARGE_MODEL_PARAMS:
        yield
        return
    before = torch.get_num_threads()
    want = min(before, cpu_threads(workers))
    torch.set_num_threads(want)
    try:
        yield
    finally:
        if torch.get_num_threads() == want:
            torch.set_num_threads(before)


@dataclass
class ProgressEvent:
    """Progress of one indexing run, sent to the ``progress`` callback after every batch."""

    tiles_done: int  # windows processed (embedded or skipped) in this run
    tiles_total: int  # windows this run has to process
    tiles_per_s: float
    eta_s: float | None
    current_file: str | None
    scenes_done: int = 0
    scenes_total: int = 0
    tiles_embedded: int = 0
    tiles_skipped: int = 0
    message: str = ""


@dataclass
class ScenePlan:
    """What to index for one scene: the windows still missing from the index."""

    scene: Scene
    stretch: Stretch
    windows: list[Window]
    resumed: bool = False  # some tiles were already stored by an interrupted run
    backfill: list[tuple[str, Window]] = field(default_factory=list)  # stored tiles lacking their regions


@dataclass
class BatchJob:
    """Up to ``batch_size`` windows of one scene; ``last`` marks the scene's final batch."""

    plan: ScenePlan
    windows: list[Window]
    last: bool
    tile_ids: list[str] | None = None  # a region backfill batch: these stored tiles' windows


@dataclass
class PreparedBatch:
    """A batch read and preprocessed by a worker, ready for ``forward``."""

    job: BatchJob
    records: list[TileRecord]
    features: Any  # BatchFeature from Embedder.prepare, or None if every tile was skipped
    skipped: int  # windows below min_valid_fraction
    error: str | None = None
    regions: list[tuple[list[Any], Any]] | None = None  # per record (or backfill tile): boxes, prepared prompts


@dataclass
class Plan:
    """The outcome of :func:`plan_scenes`."""

    scenes: list[ScenePlan] = field(default_factory=list)
    unchanged: int = 0
    removed: int = 0


def native_tile_size(scene: Scene, params: TilingParams) -> int:
    """Tile edge in native pixels (``tile_size`` output pixels at ``params.resolution``), as indexed."""
    from .raster.tiling import GridSampler

    return GridSampler(scene, params).native_size


def _under(path: str, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(folder)
        return True
    except ValueError:
        return False


def _gone(path: str) -> bool:
    """True only when ``path`` provably no longer exists (a folder that cannot be read proves nothing)."""
    try:
        os.stat(path)
        return False
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False


def remove_vanished(store: IndexStore, scene_ids: set[str], *, folder: Path,
                    keep_paths: set[str] = frozenset(),  # type: ignore[assignment]
                    keep_folders: Sequence[str] = (), seen: set[str] | None = None) -> int:
    """Delete indexed scenes under ``folder`` that the scan no longer finds.

    Scenes with a source in ``keep_paths`` (files still there but failing to open
    now) or under one of ``keep_folders`` (folders the scan could not list) keep
    their tiles; the scan reports those problems as per-file errors instead. With
    ``seen`` (every file the scan found), a scene with a source the scan did not
    see but that is not provably gone (it cannot be checked) is kept too.
    Returns the number of scenes removed.
    """
    removed = 0
    keep_dirs = [Path(d) for d in keep_folders]
    for row in store.scenes():
        sid = row["scene_id"]
        sources = row.get("sources") or []
        if isinstance(sources, str):
            sources = json.loads(sources)
        if sid in scene_ids or not sources or not all(_under(p, folder) for p in sources):
            continue
        if any(str(Path(p).resolve()) in keep_paths for p in sources):
            continue
        unseen = [p for p in sources if seen is not None and str(Path(p).resolve()) not in seen]
        if any(_under(p, d) for p in sources for d in keep_dirs) or not all(_gone(p) for p in unseen):
            log.warning("scene %s was not found by the scan but its files are not gone: kept",
                        row.get("name", sid))
            continue
        n = store.delete_scene(sid)
        removed += 1
        log.info("removed vanished scene %s (%d tiles)", row.get("name", sid), n)
    return removed


def plan_scene(store: IndexStore, scene: Scene, params: TilingParams) -> ScenePlan | None:
    """What is left to do for ``scene``; None when it is complete and unchanged.

    A changed fingerprint drops the scene's tiles first; a partial scene resumes
    with its stored stretch, skipping the tile ids already stored.
    """
    from .raster.stretch import compute_stretch
    from .raster.tiling import GridSampler, tile_id

    status = store.scene_status(scene.scene_id)
    stretch: Stretch | None = None
    done: set[str] = set()
    if status is not None:
        fingerprint, state = status
        if fingerprint != scene.fingerprint:
            n = store.delete_scene(scene.scene_id)
            log.info("scene %s changed: dropped %d tiles, re-embedding", scene.name, n)
        elif state == "complete":
            backfill = store.tiles_without_regions(scene.scene_id)
            kept = store.scene(scene.scene_id) if backfill else None
            return ScenePlan(scene, kept[1], [], backfill=backfill) if kept else None
        else:
            stored = store.scene(scene.scene_id)
            stretch = stored[1] if stored else None
            done = store.tile_ids(scene.scene_id)
    resumed = bool(done)
    if stretch is None:
        stretch = compute_stretch(scene, percentiles=params.percentiles, nodata=params.nodata,
                                  detect_fill=params.fill != "off")
        store.upsert_scene(scene, stretch)
    windows = list(GridSampler(scene, params))
    if done:
        windows = [w for w in windows if tile_id(scene, w) not in done]
    return ScenePlan(scene, stretch, windows, resumed, backfill=store.tiles_without_regions(scene.scene_id))


def plan_scenes(store: IndexStore, scenes: Sequence[Scene], params: TilingParams, *, folder: Path,
                keep_paths: set[str] = frozenset(),  # type: ignore[assignment]
                errors: list[FileError] | None = None, keep_folders: Sequence[str] = (),
                seen: set[str] | None = None) -> Plan:
    """Stage 1: delete vanished scenes, then plan every scene (see :func:`plan_scene`).

    A scene whose stretch or windows cannot be computed is appended to ``errors``
    (raised if ``errors`` is None) and the run goes on.
    """
    plan = Plan()
    plan.removed = remove_vanished(store, {s.scene_id for s in scenes}, folder=folder, keep_paths=keep_paths,
                                   keep_folders=keep_folders, seen=seen)
    for scene in scenes:
        try:
            sp = plan_scene(store, scene, params)
        except Exception as e:  # noqa: BLE001 - one bad file never stops the run
            if errors is None:
                raise
            msg = str(e) if isinstance(e, GeoVecError) else f"{type(e).__name__}: {e}"
            errors.append(FileError(path=",".join(scene.sources), error=msg))
            log.warning("scene %s: %s", scene.name, msg)
            continue
        if sp is None:
            plan.unchanged += 1
        else:
            plan.scenes.append(sp)
    return plan


def iter_batches(plans: Sequence[ScenePlan], batch_size: int) -> Iterator[BatchJob]:
    """Cut each scene's windows into batches; a scene with nothing left yields one empty last batch."""
    for p in plans:
        for i in range(0, len(p.backfill), batch_size):
            part = p.backfill[i : i + batch_size]
            yield BatchJob(p, [w for _, w in part], not p.windows and i + batch_size >= len(p.backfill),
                           tile_ids=[t for t, _ in part])
        if not p.windows:
            if not p.backfill:
                yield BatchJob(p, [], True)
            continue
        for i in range(0, len(p.windows), batch_size):
            chunk = p.windows[i : i + batch_size]
            yield BatchJob(p, chunk, i + batch_size >= len(p.windows))


class TileReader:
    """Stage 2: read + stretch + filter + ``Embedder.prepare`` one batch (thread-safe).

    Each worker thread keeps the files of the scene it reads open
    (:class:`~geovec.backend.raster.handles.DatasetCache`) instead of reopening them per
    tile; :meth:`close` closes them when the run ends. ``embedder`` may be None for a
    reader that only reads (:meth:`read`).
    """

    def __init__(self, embedder: Embedder | None, params: TilingParams, *, instruction: str | None = None,
                 regions: RegionMaker | None = None) -> None:
        from .raster.handles import DatasetCache

        self.embedder = embedder
        self.params = params
        self.regions = regions
        self.instruction = instruction if instruction is not None else (
            embedder.preset.instructions["tile"] if embedder is not None else "")
        self.handles = DatasetCache()

    def close(self) -> None:
        """Close the datasets the worker threads kept open."""
        self.handles.close()

    def read_window(self, scene: Scene, stretch: Stretch, window: Window,
                    keep_all: bool = False) -> tuple[TileRecord, np.ndarray] | None:
        """One window's record and image, or None when it is below ``min_valid_fraction`` (unless ``keep_all``)."""
        from .raster.tiling import make_record, read_tile

        img, vf = read_tile(scene, window, stretch, out_size=self.params.tile_size, handles=self.handles)
        if not keep_all and (vf < self.params.min_valid_fraction or vf <= 0.0):
            return None
        return make_record(scene, window, valid_fraction=vf, out_size=self.params.tile_size), img

    def read(self, job: BatchJob) -> tuple[list[TileRecord], list[np.ndarray], int]:
        """Windowed reads of ``job``; returns kept records, their images and the skipped count."""
        records: list[TileRecord] = []
        images: list[np.ndarray] = []
        skipped = 0
        scene, stretch = job.plan.scene, job.plan.stretch
        self.handles.keep_only(b.path for b in scene.bands)  # this thread moved on: close the last scene's
        for w in job.windows:
            got = self.read_window(scene, stretch, w, keep_all=job.tile_ids is not None)
            if got is None:
                skipped += 1
                continue
            records.append(got[0])
            images.append(got[1])
        return records, images, skipped

    def __call__(self, job: BatchJob) -> PreparedBatch:
        try:
            records, images, skipped = self.read(job)
            features = None
            if images and job.tile_ids is None:
                assert self.embedder is not None, "a read-only TileReader cannot prepare"
                features = self.embedder.prepare([EmbedInput(self.instruction, image=im) for im in images])
                features = pin(features, getattr(self.embedder, "device", None))
            regions = None
            if self.regions is not None and images:
                regions = [self.regions.prepare(job.plan.scene, r.window, im)
                           for r, im in zip(records, images, strict=True)]
            return PreparedBatch(job, records, features, skipped, regions=regions)
        except Exception as e:  # noqa: BLE001 - reported per file, never a silent skip
            log.debug("reading %s failed", job.plan.scene.name, exc_info=True)
            return PreparedBatch(job, [], None, 0, error=str(e) or type(e).__name__)


def pin(features: Any, device: Any) -> Any:
    """Page-locked copies of a batch's tensors when it is bound for a CUDA device (else as is)."""
    if getattr(device, "type", "") != "cuda" or features is None:
        return features
    for key, value in list(features.items()):
        if hasattr(value, "pin_memory"):
            features[key] = value.pin_memory()
    return features


def embed_batch(embedder: Embedder, features: Any) -> np.ndarray:
    """Stage 3: forward one prepared batch under ``inference_mode``; float32 (n, dim)."""
    import torch

    device = getattr(embedder, "device", None)
    if device is not None and hasattr(features, "to"):
        # pinned by the reader thread on CUDA, so the copy overlaps the previous batch's forward
        features = features.to(device, non_blocking=getattr(device, "type", "") == "cuda")
    with torch.inference_mode():
        out = embedder.forward(features)
    return out.float().cpu().numpy().astype(np.float32, copy=False)


class TileWriter:
    """Stage 4: add vectors to the store, checkpoint periodically and at the end.

    A checkpoint rewrites the whole hnsw file (gigabytes at a million tiles), so the
    interval is at least ``every_s`` and at least :data:`CHECKPOINT_COST_RATIO` times
    the last checkpoint's duration: checkpoints never take more than a small share of
    the run. Nothing is lost in between: SQLite (committed per batch) is the source of
    truth, and the next open re-adds what the hnsw file lacks.
    """

    def __init__(self, store: IndexStore, every_s: float = CHECKPOINT_EVERY_S) -> None:
        self.store = store
        self.every_s = every_s
        self.interval_s = every_s
        self._last = time.monotonic()

    def write(self, records: Sequence[TileRecord], vectors: np.ndarray,
              regions: Sequence[tuple[Any, Any]] | None = None) -> int:
        n = self.store.add(records, vectors, regions) if records else 0
        if time.monotonic() - self._last >= self.interval_s:
            self.checkpoint()
        return n

    def complete(self, scene_id: str) -> None:
        self.store.complete_scene(scene_id)

    def checkpoint(self) -> None:
        t0 = time.monotonic()
        self.store.checkpoint()
        self._last = time.monotonic()
        self.interval_s = max(self.every_s, CHECKPOINT_COST_RATIO * (self._last - t0))


class RunProgress:
    """Counts of one run, sent to the progress callback by :meth:`emit`."""

    def __init__(self, total: int, scenes_total: int, cb: Callable[[ProgressEvent], None] | None) -> None:
        self.total, self.scenes_total, self.cb = total, scenes_total, cb
        self.done = self.embedded = self.skipped = self.scenes_done = 0
        self.t0 = time.monotonic()

    def emit(self, current: str | None, message: str = "") -> None:
        if self.cb is None:
            return
        dt = max(time.monotonic() - self.t0, 1e-9)
        rate = self.done / dt
        eta = (self.total - self.done) / rate if rate > 0 else None
        try:
            self.cb(ProgressEvent(self.done, self.total, rate, eta, current, self.scenes_done,
                                  self.scenes_total, self.embedded, self.skipped, message))
        except Exception:  # a broken progress consumer must not kill the indexing run
            log.warning("progress callback failed", exc_info=True)


#: ``(store, embedder, plans, params, batch_size, workers, cancel, progress, summary) -> None``: runs
#: read -> embed -> write for the planned scenes, updating ``progress`` and ``summary``.
StageRunner = Callable[["IndexStore", Any, Sequence[ScenePlan], TilingParams, int, int, threading.Event,
                        RunProgress, IndexSummary], None]


def _open_store(index_path: str | Path, embedder: Embedder, params: TilingParams, *,
                force: bool = False) -> IndexStore:
    from .index.store import IndexStore

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
    folder: str | Path,
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
) -> IndexSummary:
    """Index (or update) every raster under ``folder`` into the index at ``index_path``.

    Args:
        folder: folder scanned recursively for .tif/.tiff/.vrt.
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
            process, a thread pool for reads; :mod:`geovec.backend.ray_engine` runs
            them as Ray Data stages). ``embedder`` then only needs ``dim``, ``preset``,
            ``checkpoint_id``, ``identity`` and ``with_image`` (see ``RemoteModel``).
        regions: a region SPEC (see :class:`~geovec.backend.regions.RegionSpec`; '' = the
            default) to store candidate region vectors too; None keeps the index's own
            (an index without regions stays without). Tiles already stored get theirs.
            Regions are embedded by the in-process runner only.
        batch_tokens: size batches by token count instead: as many tiles per forward as fit
            this many image + prompt tokens (a GPU stays busy with small images and does not
            run out of memory with large ones); overrides ``batch_size``.

    Returns:
        An :class:`IndexSummary`; per-file problems are in ``errors``.
    """
    from .pipeline_regions import setup_regions
    from .raster.scan import scan_folder
    from .regions import RegionSpec

    t0 = time.monotonic()
    if regions is not None:
        RegionSpec.parse(regions)  # bad input fails before the index is touched
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise NotFoundError(f"folder {str(folder)!r} does not exist or is not a folder",
                            "give a folder containing .tif/.tiff/.vrt rasters")
    root = root.resolve()
    cancel = cancel or threading.Event()
    scan = scan_folder(root, groups=groups, bands=params.bands)
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
