"""The body of a shard actor: one index opened read-only, reopened whole when its sidecar changes.

Ray runs one call at a time in the actor, and a call uses the store it started with, so a search sees
the index before a re-index checkpoint or after it, never half of each. An index that cannot be opened
leaves the actor alive with :attr:`ShardServer.error` (one line) for the driver to report.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import GeoVecError, ShardError
from ..index.files import SIDECAR

if TYPE_CHECKING:
    from ..index.store import IndexStore
    from ..types import Scene, Stretch, TileRecord

log = logging.getLogger(__name__)


def sidecar_stamp(path: str | Path) -> tuple[int, int] | None:
    """(mtime ns, size) of the index's sidecar: a checkpoint or a re-index changes it."""
    try:
        st = os.stat(Path(path) / SIDECAR)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def one_line(e: BaseException) -> str:
    """``e`` as one line: a GeoVecError's message and hint, else its type and text."""
    if isinstance(e, GeoVecError):
        text = f"{e.message}; {e.hint}" if getattr(e, "hint", None) else e.message
    else:
        text = f"{type(e).__name__}: {e}"
    return " ".join(str(text).split())


class ShardServer:
    """One index in a Ray actor (see the module docstring); ``recheck_s``: how often the sidecar is checked."""

    def __init__(self, path: str, recheck_s: float = 1.0) -> None:
        self.path = path
        self.recheck_s = recheck_s
        self.error: str | None = None
        self.error_kind = "ShardError"  # the GeoVecError class the driver raises for ``error``
        self.store: IndexStore | None = None
        self.stamp: tuple[int, int] | None = None
        self.generation = 0
        self.checked = time.monotonic()
        try:
            self.store, self.stamp = self._open()
        except Exception as e:  # noqa: BLE001 - reported by the driver as one line
            self.error = one_line(e)
            if isinstance(e, GeoVecError):
                self.error_kind = type(e).__name__

    def _open(self) -> tuple[IndexStore, tuple[int, int] | None]:
        from ..index.store import IndexStore

        stamp = sidecar_stamp(self.path)  # before opening: a change meanwhile reopens on the next check
        return IndexStore.open(self.path, writable=False), stamp

    def _current(self) -> IndexStore:
        if self.store is None:
            raise ShardError(f"shard {self.path} is not open: {self.error}", "fix the index; the shard retries on restart")
        now = time.monotonic()
        if now - self.checked >= self.recheck_s:
            self.checked = now
            stamp = sidecar_stamp(self.path)
            if stamp != self.stamp:
                try:
                    fresh, stamp = self._open()
                except Exception:  # noqa: BLE001 - mid-write or damaged: keep answering from the open one
                    log.warning("shard %s: the changed index cannot be opened yet; still serving generation %d",
                                self.path, self.generation, exc_info=True)
                else:
                    old, self.store, self.stamp = self.store, fresh, stamp
                    self.generation += 1
                    old.close()
                    log.info("shard %s: reloaded (generation %d, %d tiles)", self.path, self.generation, fresh.count)
        return self.store

    def info(self) -> dict[str, Any]:
        """What the driver needs to plan and merge: count, dim, sidecar, pid, generation, or the error."""
        if self.store is None:
            return {"error": self.error, "error_kind": self.error_kind, "pid": os.getpid()}
        store = self._current()
        return {"error": None, "path": str(store.path), "count": int(store.count), "dim": int(store.dim),
                "meta": dict(store.meta or {}), "pid": os.getpid(), "generation": self.generation}

    def search(self, vectors: np.ndarray, k: int) -> tuple[list[list[tuple[TileRecord, float]]], int, int]:
        """(``IndexStore.search`` hits, tile count, generation), all from one store."""
        store = self._current()
        return store.search(vectors, int(k)), int(store.count), self.generation

    def scenes(self) -> list[dict[str, Any]]:
        return self._current().scenes()

    def scene(self, scene_id: str) -> tuple[Scene, Stretch] | None:
        return self._current().scene(scene_id)

    def scene_for_path(self, path: Any) -> tuple[Scene, Stretch] | None:
        return self._current().scene_for_path(path)

    def scene_dates(self) -> dict[str, tuple[str, str]]:
        """scene_id -> (acquired, source) of every dated scene of this shard's index."""
        from ..index.dates import read

        return {sid: (d.acquired, d.source) for sid, d in read(self._current()).items()}

    def ping(self) -> int:
        return os.getpid()
