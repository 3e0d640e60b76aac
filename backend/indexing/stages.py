"""Stages 2 to 4 of indexing, shared by the in-process runner (:mod:`.run`) and Ray (:mod:`.ray_engine`).

* :class:`TileReader` reads one batch (windowed reads, stretch, valid-fraction
  filter) **and** runs the model's processor on it (``Embedder.prepare``); it is
  thread-safe and runs in a worker pool, so the main thread only runs ``forward``.
* :func:`embed_batch` runs the model; :class:`TileWriter` adds vectors to the
  :class:`~geovec.backend.index.store.IndexStore` and checkpoints.
* :class:`RunProgress` counts a run and sends :class:`ProgressEvent` s;
  :func:`torch_threads` shares the cores between torch and the reader threads.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..types import EmbedInput, Scene, Stretch, TileRecord, TilingParams, Window
from .plan import BatchJob
from .region_stage import RegionMaker

if TYPE_CHECKING:
    from ..index.store import IndexStore
    from ..model.embedder import Embedder

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
class PreparedBatch:
    """A batch read and preprocessed by a worker, ready for ``forward``."""

    job: BatchJob
    records: list[TileRecord]
    features: Any  # BatchFeature from Embedder.prepare, or None if every tile was skipped
    skipped: int  # windows below min_valid_fraction
    error: str | None = None
    regions: list[tuple[list[Any], Any]] | None = None  # per record (or backfill tile): boxes, prepared prompts


class TileReader:
    """Stage 2: read + stretch + filter + ``Embedder.prepare`` one batch (thread-safe).

    Each worker thread keeps the files of the scene it reads open
    (:class:`~geovec.backend.raster.handles.DatasetCache`) instead of reopening them per
    tile; :meth:`close` closes them when the run ends. ``embedder`` may be None for a
    reader that only reads (:meth:`read`).
    """

    def __init__(self, embedder: Embedder | None, params: TilingParams, *, instruction: str | None = None,
                 regions: RegionMaker | None = None) -> None:
        from ..raster.handles import DatasetCache

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
        from ..raster.tiling import make_record, read_tile

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
