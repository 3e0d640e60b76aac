"""What the server keeps between requests: one resident model and the open indexes.

* :class:`ModelSlot` holds at most one :class:`Embedder`. It loads lazily on first
  use, under a lock, and a different model replaces the resident one only when no
  job is using it (never two resident by accident). Every forward pass goes
  through :class:`SerialisedEmbedder`, which holds ``gpu_lock``: indexing batches
  and queries interleave batch by batch instead of running at once on the device.
* :class:`StoreCache` is the ``store_cache`` handed to ``service.run_search``:
  path -> read-only IndexStore, reopened when the index's sidecar changes (a job
  checkpointed), keeping the previous one until the new one opens. Replaced
  stores are closed after a grace period, so a search still running on one
  never sees it closed. Each index is pre-warmed once, when its path is first
  opened, in a background thread (``index.prewarm``: the SQLite pages a search
  reads); reopening after a checkpoint does not read it again. The warm-up stops
  when the path is dropped from the cache.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..errors import BusyError, InputError, NotFoundError
from .paths import check_path
from .settings import Settings

if TYPE_CHECKING:
    from ..cluster import RayShards
    from ..index.store import IndexStore
    from ..model.embedder import Embedder

log = logging.getLogger(__name__)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
RETIRE_AFTER_S = 30.0
#: Requests that may wait for the model at once; more get BusyError at once (worker threads stay free).
MAX_MODEL_WAITERS = 32  # below the 40 worker threads, so reads always find one


class SerialisedEmbedder:
    """The resident Embedder with ``encode``/``forward`` serialised by one lock; the rest delegates.

    A request holds the lock for one batch at a time (``encode`` takes it per batch, so
    queries and indexing batches interleave), waits for it at most ``wait_s`` seconds and
    at most as many requests as ``waiters`` allows wait at once; beyond either, BusyError. So a
    request never ties up the model, nor the server's worker threads, for long.
    """

    def __init__(self, inner: Embedder, lock: threading.Lock, *, wait_s: float | None = 60.0,
                 waiters: threading.BoundedSemaphore | None = None) -> None:
        self._inner = inner
        self._lock = lock
        self._wait_s = wait_s
        self._waiters = waiters

    @contextmanager
    def _held(self) -> Iterator[None]:
        from ..errors import BusyError

        if self._waiters is not None and not self._waiters.acquire(blocking=False):
            raise BusyError("the model is busy: too many requests are waiting for it",
                            "retry in a moment (an indexing job or other queries are using it)")
        try:
            if not self._lock.acquire(timeout=-1 if self._wait_s is None else self._wait_s):
                raise BusyError(f"the model stayed busy for {self._wait_s or 0:.0f} s",
                                "retry when the running job or queries are done")
        finally:
            if self._waiters is not None:
                self._waiters.release()
        try:
            yield
        finally:
            self._lock.release()

    def encode(self, inputs: Any, *args: Any, batch_size: int = 8, **kwargs: Any) -> Any:
        import numpy as np

        inputs = list(inputs)
        if len(inputs) <= batch_size:
            with self._held():
                return self._inner.encode(inputs, *args, batch_size=batch_size, **kwargs)
        parts = []
        for s in range(0, len(inputs), batch_size):
            with self._held():
                parts.append(self._inner.encode(inputs[s : s + batch_size], *args, batch_size=batch_size, **kwargs))
        return np.concatenate(parts, axis=0)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with self._held():
            return self._inner.forward(*args, **kwargs)

    def encode_regions(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._inner.encode_regions(*args, **kwargs)

    def forward_regions(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._inner.forward_regions(*args, **kwargs)

    def with_image(self, image: Any) -> SerialisedEmbedder:
        return SerialisedEmbedder(self._inner.with_image(image), self._lock)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class ModelSlot:
    """At most one resident model, loaded lazily; swapped only when idle."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.gpu_lock = threading.Lock()
        self.waiters = threading.BoundedSemaphore(MAX_MODEL_WAITERS)
        self._load_lock = threading.Lock()
        self._embedder: Embedder | None = None
        self._spec: str | None = None
        self._device: str | None = None
        self._users = 0

    @property
    def loaded(self) -> bool:
        return self._embedder is not None

    @property
    def spec(self) -> str | None:
        return self._spec if self._embedder is not None else self.settings.model

    def device(self) -> str:
        if self._embedder is not None:
            return str(self._embedder.device)
        return self.settings.device

    def _normalise(self, spec: str) -> str:
        """A preset, a hub id, or an absolute local folder allowed by the settings (NotFoundError otherwise)."""
        if "\x00" in spec or len(spec) > 4096 or not spec.strip():
            raise InputError(f"model {spec[:80]!r} is not a model name", "give a preset name, a local folder or owner/name")
        from ..model.presets import PRESETS
        from ..paths import ABSOLUTE_PATH

        if re.match(ABSOLUTE_PATH, spec):
            return str(check_path(spec, "model", self.settings))
        if spec in PRESETS or HUB_ID.match(spec):
            return spec
        raise NotFoundError(f"model {spec[:200]!r} is neither an absolute local folder, a preset "
                            f"({', '.join(sorted(PRESETS))}) nor a hub id (owner/name)",
                            "give a checkpoint folder, a preset name or a hub id")

    def get(self, spec: str | None = None, *, device: str | None = None) -> SerialisedEmbedder:
        """The resident model, loading ``spec`` (or the default) if needed.

        Raises:
            BusyError: a different model is resident and a job is using it.
            ModelUnavailableError: no model was named and none is configured.
        """
        from ..errors import ModelUnavailableError

        with self._load_lock:
            want = self._normalise(spec) if spec else (self._spec if self._embedder else self.settings.model)
            if want is None:
                raise ModelUnavailableError("no model is loaded and none was named",
                                            "start the server with --model, POST /v1/models/load, or pass model")
            dev = device or self.settings.device
            if self._embedder is not None and want == self._spec and (device is None or device == self._device):
                return self._serialised()
            if self._users:
                raise BusyError(f"model {self._spec} is in use by a running job; cannot switch to {want}",
                                "wait for the job to finish or cancel it, then retry")
            self._drop()
            from ..model.embedder import load_embedder

            t0 = time.monotonic()
            log.info("loading model %s on %s", want, dev)
            self._embedder = load_embedder(want, device=dev, dtype=self.settings.dtype,
                                           image_size=self.settings.image_size)
            self._spec, self._device = want, dev
            log.info("model %s loaded on %s in %.1f s (dim %d)", want, self._embedder.device,
                     time.monotonic() - t0, self._embedder.dim)
            return self._serialised()

    def _serialised(self) -> SerialisedEmbedder:
        assert self._embedder is not None
        return SerialisedEmbedder(self._embedder, self.gpu_lock, wait_s=self.settings.model_wait_s,
                                  waiters=self.waiters)

    def acquire(self, spec: str | None = None) -> SerialisedEmbedder:
        """Like :meth:`get`, and pins the model until :meth:`release` (used by jobs: they wait their turn)."""
        emb = self.get(spec)
        with self._load_lock:
            self._users += 1
        return SerialisedEmbedder(emb._inner, self.gpu_lock, wait_s=None)

    def release(self) -> None:
        with self._load_lock:
            self._users = max(0, self._users - 1)

    def unload(self) -> None:
        with self._load_lock:
            if self._users:
                raise BusyError(f"model {self._spec} is in use by a running job",
                                "wait for the job to finish or cancel it, then unload")
            self._drop()

    def _drop(self) -> None:
        if self._embedder is None:
            return
        log.info("unloading model %s", self._spec)
        self._embedder = None
        self._spec = None
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(os.path.join(path, "index.json"))
        return st.st_mtime_ns, st.st_size
    except OSError:
        return None


class StoreCache(MutableMapping[str, "IndexStore"]):
    """Open read-only stores keyed by resolved path; stale entries (sidecar changed) read as absent."""

    def __init__(self, recheck_s: float = 0.5, prewarm: bool = True) -> None:
        self._stores: dict[str, tuple[IndexStore, tuple[int, int] | None, float]] = {}
        self._retired: list[tuple[float, IndexStore]] = []
        self._lock = threading.RLock()
        self.recheck_s = recheck_s
        self.prewarm = prewarm
        #: index path -> the event that stops its background warm-up (see ``index.prewarm``)
        self.warming: dict[str, threading.Event] = {}

    def __contains__(self, key: object) -> bool:
        with self._lock:
            entry = self._stores.get(key) if isinstance(key, str) else None
            if entry is None:
                return False
            store, stamp, checked = entry
            now = time.monotonic()
            if now - checked < self.recheck_s:
                return True
            if _stamp(str(key)) == stamp:
                self._stores[key] = (store, stamp, now)  # type: ignore[index]
                return True
            return False

    def __getitem__(self, key: str) -> IndexStore:
        with self._lock:
            return self._stores[key][0]

    def __setitem__(self, key: str, store: IndexStore) -> None:
        with self._lock:
            old = self._stores.get(key)
            self._stores[key] = (store, _stamp(key), time.monotonic())
            if old is not None and old[0] is not store:
                self._retired.append((time.monotonic(), old[0]))
            if self.prewarm and key not in self.warming:  # the same file: a reopened store needs no second pass
                from ..index import prewarm
                from ..index.files import DB

                self.warming[key] = prewarm.start(store.path / DB)
            self._sweep()

    def __delitem__(self, key: str) -> None:
        with self._lock:
            self._retired.append((time.monotonic(), self._stores.pop(key)[0]))
            stop = self.warming.pop(key, None)
            if stop is not None:
                stop.set()

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._stores))

    def __len__(self) -> int:
        return len(self._stores)

    def _sweep(self, force: bool = False) -> None:
        now = time.monotonic()
        keep = []
        for t, store in self._retired:
            if force or now - t > RETIRE_AFTER_S:
                _close(store)
            else:
                keep.append((t, store))
        self._retired = keep

    def close_all(self) -> None:
        with self._lock:
            for stop in self.warming.values():
                stop.set()
            self.warming.clear()
            for store, _, _ in self._stores.values():
                _close(store)
            self._stores.clear()
            self._sweep(force=True)


def _close(store: IndexStore) -> None:
    try:
        store.close()
    except Exception:  # noqa: BLE001 - closing at shutdown must go on for the others
        log.warning("closing an index failed", exc_info=True)


class ServerState:
    """The app's shared state: settings, model slot, store cache, opened index paths, jobs."""

    def __init__(self, settings: Settings) -> None:
        from .jobs import JobManager

        self.settings = settings
        self.models = ModelSlot(settings)
        self.stores = StoreCache()
        self.opened: set[str] = set()
        self.jobs = JobManager(settings, self.models)
        self.started = time.time()
        #: engine ray: the shard actors searches go to (started on first use), else None
        self.shards: RayShards | None = None
        if settings.engine == "ray":
            from ..cluster import RayShards

            self.shards = RayShards(settings.ray_address)

    def close(self) -> None:
        self.jobs.shutdown()
        self.stores.close_all()
        if self.shards is not None:
            self.shards.close()
