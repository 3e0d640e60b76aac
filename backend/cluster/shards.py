"""Shard actors on Ray and the index set over them (see the package docstring).

Each index is one actor (:class:`~.shard.ShardServer`) that asks Ray for the memory its index takes
(:func:`shard_memory`) and no CPU while idle, so Ray places it on a node with that much RAM free. The
serving process keeps the model: it embeds the query, sends the vector to every shard at once, and merges
their hits exactly as :class:`~geovec.backend.search.MultiStore` does in one process.

Faults: an actor is restarted by Ray (``max_restarts``) and reopens its index from disk. A shard that
fails a call, or has not answered within ``call_timeout_s``, is left out of the answer (``partial: true``,
named in ``missing``) and skipped until it answers a ping, so searches meanwhile neither wait nor fail.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import errors
from ..errors import GeoVecError, InputError, ShardError
from ..raster.dates import SceneDate
from ..search import MultiStore
from ..types import Scene, Stretch, TileRecord
from .shard import ShardServer

log = logging.getLogger(__name__)

#: RAM an idle shard process takes besides its index (Python, numpy, hnswlib, SQLite), bytes.
SHARD_BASE_BYTES = 300 << 20
_ACTOR: Any = None


def shard_memory(path: str | Path) -> int:
    """Bytes of RAM to reserve for the index at ``path``: its files (vectors, graph, records) plus a process."""
    total = 0
    for p in Path(path).rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:
            continue
    return int(total * 1.1) + SHARD_BASE_BYTES


class ShardProxy:
    """The driver's side of one shard: what ``MultiStore`` reads (path, dim, meta, count) and its health."""

    def __init__(self, actor: Any, path: str, info: dict[str, Any], memory: int) -> None:
        self.actor = actor
        self.path = Path(path)
        self.memory = memory
        self.dim = int(info["dim"])
        self.meta: dict[str, Any] = info["meta"]
        self.count = int(info["count"])
        self.pid = int(info["pid"])
        self.generation = int(info.get("generation", 0))
        self._ping: Any = None  # while down: the info call that brings it back
        self._lock = threading.Lock()

    def available(self, ray: Any) -> bool:
        """True unless down; a down shard whose ping came back with its index open is up again."""
        with self._lock:
            if self._ping is None:
                return True
            ready, _ = ray.wait([self._ping], timeout=0)
            if not ready:
                return False
            try:
                info = ray.get(ready[0])
            except ray.exceptions.RayError:
                info = {"error": "no answer"}
            if info.get("error"):
                self._ping = self.actor.info.remote()
                return False
            self._ping = None
            self.count, self.pid, self.generation = int(info["count"]), int(info["pid"]), int(info["generation"])
            log.info("shard %s is back (pid %d, %d tiles)", self.path, self.pid, self.count)
            return True

    def mark_down(self) -> None:
        with self._lock:
            if self._ping is None:
                self._ping = self.actor.info.remote()

    def close(self) -> None:
        """Nothing: the actor belongs to :class:`RayShards` and serves the next search too."""


class RayIndexSet(MultiStore):
    """A :class:`MultiStore` whose indexes are shard actors: calls fan out in parallel, and shards that do
    not answer are named in ``missing`` instead of failing the search."""

    def __init__(self, shards: Sequence[ShardProxy], ray: Any, *, force: bool = False,
                 timeout_s: float = 30.0) -> None:
        super().__init__(shards, force=force)  # type: ignore[arg-type]
        self.ray = ray
        self.timeout_s = timeout_s

    def _search_one(self, q: np.ndarray, k: int) -> None:
        return None  # one round trip per shard (its hits with their records) instead of two

    def each(self, call: Callable[[Any], Any]) -> dict[int, Any]:
        ray = self.ray
        refs: dict[int, Any] = {}
        for i, s in enumerate(self.stores):
            if s.available(ray):  # type: ignore[attr-defined]
                refs[i] = call(s)
            else:
                self.missing.append(str(s.path))
        out: dict[int, Any] = {}
        deadline = time.monotonic() + self.timeout_s
        for i, ref in refs.items():
            shard = self.stores[i]
            try:
                out[i] = ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
            except ray.exceptions.RayTaskError as e:
                cause = getattr(e, "cause", None)
                if isinstance(cause, GeoVecError) and not isinstance(cause, ShardError):
                    raise cause from None  # the request's fault (bad k, ...), not the shard's
                log.warning("shard %s failed a call (%s); left out until it answers", shard.path, e)
                shard.mark_down()  # type: ignore[attr-defined]
                self.missing.append(str(shard.path))
            except (ray.exceptions.RayError, TimeoutError) as e:
                log.warning("shard %s did not answer (%s); left out until it answers again", shard.path,
                            type(e).__name__)
                shard.mark_down()  # type: ignore[attr-defined]
                self.missing.append(str(shard.path))
        return out

    def search(self, vectors: np.ndarray, k: int, *,
               filter: Callable[[str], bool] | None = None) -> list[list[tuple[TileRecord, float]]]:
        if filter is not None:
            raise InputError("a filtered search (within, scenes) takes one index, not a set of shards",
                             "search the indexes one at a time")
        qs = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        got = self.each(lambda s: s.actor.search.remote(qs, int(k)))
        per: dict[int, list[list[tuple[TileRecord, float]]]] = {}
        for i, (hits, count, generation) in got.items():
            shard: ShardProxy = self.stores[i]  # type: ignore[assignment]
            shard.count, shard.generation = count, generation
            per[i] = hits
        return self.merge(per, len(qs), int(k))

    def scenes(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        got = self.each(lambda s: s.actor.scenes.remote())
        for i in sorted(got):
            for row in got[i]:
                if row["scene_id"] not in seen:
                    seen.add(row["scene_id"])
                    rows.append(row)
        return rows

    def scene_dates(self) -> dict[str, SceneDate]:
        """scene_id -> acquisition date over the shards that answer (hits of a missing shard are not shown)."""
        got = self.each(lambda s: s.actor.scene_dates.remote())
        return {sid: SceneDate(acquired, source) for i in sorted(got) for sid, (acquired, source) in got[i].items()}

    def scene(self, scene_id: str) -> tuple[Scene, Stretch] | None:
        got = self.each(lambda s: s.actor.scene.remote(scene_id))
        return next((got[i] for i in sorted(got) if got[i] is not None), None)

    def scene_for_path(self, path: Any) -> tuple[Scene, Stretch] | None:
        got = self.each(lambda s: s.actor.scene_for_path.remote(str(path)))
        return next((got[i] for i in sorted(got) if got[i] is not None), None)


class RayShards:
    """The :class:`~geovec.backend.search.IndexSet` on Ray: one shard actor per index, started on first use.

    Args:
        address: the Ray cluster (``auto``, ``ray://HOST:10001``, ``HOST:6379``); None: an initialised Ray,
            else a new local one (stopped again by :meth:`close`).
        start_timeout_s: how long a shard may take to be placed and open its index.
        call_timeout_s: how long a search waits for a shard before answering without it.
        recheck_s: how often a shard looks at its index's sidecar for a re-index.
        max_restarts: how often Ray restarts a dead shard (-1: always).
        num_cpus: CPUs a shard holds (0: it only needs memory; the search is short).
    """

    def __init__(self, address: str | None = None, *, start_timeout_s: float = 120.0, call_timeout_s: float = 30.0,
                 recheck_s: float = 1.0, max_restarts: int = -1, num_cpus: float = 0.0) -> None:
        self.address = address
        self.start_timeout_s = start_timeout_s
        self.call_timeout_s = call_timeout_s
        self.recheck_s = recheck_s
        self.max_restarts = max_restarts
        self.num_cpus = num_cpus
        self.ray: Any = None
        self.started_ray = False
        self.shards: dict[str, ShardProxy] = {}
        self._lock = threading.Lock()

    def connect(self) -> Any:
        if self.ray is None:
            from ..indexing.ray_engine import connect, import_ray

            was_up = import_ray().is_initialized()
            self.ray = connect(self.address)
            self.started_ray = not was_up
        return self.ray

    def shard(self, path: str | Path) -> ShardProxy:
        """The shard of the index at ``path``, started (and its index opened) if it is not running."""
        return self.start([path])[0]

    def start(self, paths: Sequence[str | Path]) -> list[ShardProxy]:
        """The shards of ``paths``; those not running are started together (each opens its index in parallel)."""
        keys = [str(Path(p).expanduser().resolve()) for p in paths]
        with self._lock:
            new = [k for k in dict.fromkeys(keys) if k not in self.shards]
            launched = [self._launch(k) for k in new]
            failure: GeoVecError | None = None
            deadline = time.monotonic() + self.start_timeout_s
            for key, (actor, memory, ref) in zip(new, launched, strict=True):
                try:
                    self.shards[key] = self._started(key, actor, memory, ref, deadline)
                except GeoVecError as e:
                    failure = failure or e
            if failure is not None:
                raise failure
            return [self.shards[k] for k in keys]

    def _launch(self, key: str) -> tuple[Any, int, Any]:
        global _ACTOR
        ray = self.connect()
        if _ACTOR is None:
            _ACTOR = ray.remote(ShardServer)
        memory = shard_memory(key)
        actor = _ACTOR.options(max_restarts=self.max_restarts, max_task_retries=0, num_cpus=self.num_cpus,
                               memory=memory).remote(key, self.recheck_s)
        return actor, memory, actor.info.remote()

    def _started(self, key: str, actor: Any, memory: int, ref: Any, deadline: float) -> ShardProxy:
        ray = self.ray
        try:
            info = ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
        except ray.exceptions.GetTimeoutError:
            ray.kill(actor)
            raise ShardError(f"shard {key} did not start within {self.start_timeout_s:g} s: no node has "
                             f"{memory / 2**30:.2f} GiB of memory free for it",
                             "add a node with that much free memory (ray start), or split the index") from None
        except ray.exceptions.RayError as e:
            ray.kill(actor)
            raise ShardError(f"shard {key} cannot start: {str(e).splitlines()[0]}",
                             "check the Ray workers' logs on the node") from None
        if info.get("error"):
            ray.kill(actor)
            cls = getattr(errors, str(info.get("error_kind")), ShardError)
            if not (isinstance(cls, type) and issubclass(cls, GeoVecError)):
                cls = ShardError
            raise cls(f"shard {key} cannot start: {info['error']}",
                      "every node must see the index at the same path") from None
        log.info("shard %s started (pid %s, %d tiles, %.2f GiB reserved)", key, info["pid"], info["count"],
                 memory / 2**30)
        return ShardProxy(actor, key, info, memory)

    def open_set(self, paths: Sequence[str], *, force: bool = False) -> RayIndexSet:
        return RayIndexSet(self.start(paths), self.connect(), force=force, timeout_s=self.call_timeout_s)

    def release(self, multi: MultiStore) -> None:
        """Nothing: the shards stay up for the next search."""

    def close(self) -> None:
        """Stop the shard actors, and the local Ray if this object started it."""
        with self._lock:
            ray, shards = self.ray, list(self.shards.values())
            self.shards.clear()
            if ray is None:
                return
            for s in shards:
                try:
                    ray.kill(s.actor, no_restart=True)
                except Exception:  # noqa: BLE001 - stopping the others matters more
                    log.debug("killing shard %s failed", s.path, exc_info=True)
            if self.started_ray:
                ray.shutdown()
            self.ray = None
