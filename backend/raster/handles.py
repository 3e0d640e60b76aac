"""Open raster datasets kept per worker thread, so a scene's files are opened once, not per tile.

A stack of one-band files used to be reopened for every tile (three ``rasterio.open``
calls per 64-px tile). :class:`DatasetCache` keeps each thread's open datasets
(rasterio datasets are not safe to share between threads) for the scene it is
reading: when a thread moves on to another scene, the previous scene's files are
closed, so open files stay at ``threads x files per scene``. :meth:`close` closes
everything (call it when the run ends).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any

log = logging.getLogger(__name__)

#: Files kept open per thread (a scene's stack plus the next scene's, at most).
MAX_OPEN_PER_THREAD = 16


class DatasetCache:
    """Per-thread open ``rasterio`` datasets, least recently used closed first."""

    def __init__(self, max_open: int = MAX_OPEN_PER_THREAD) -> None:
        self.max_open = max(1, int(max_open))
        self._local = threading.local()
        self._all: list[OrderedDict[str, Any]] = []
        self._lock = threading.Lock()
        self.opened = 0  # datasets opened so far (for tests and benchmarks)

    def _mine(self) -> OrderedDict[str, Any]:
        handles: OrderedDict[str, Any] | None = getattr(self._local, "handles", None)
        if handles is None:
            handles = OrderedDict()
            self._local.handles = handles
            with self._lock:
                self._all.append(handles)
        return handles

    def get(self, path: str) -> Any:
        """This thread's open dataset for ``path`` (opened on first use; errors propagate)."""
        import rasterio

        handles = self._mine()
        src = handles.get(path)
        if src is not None and not src.closed:
            handles.move_to_end(path)
            return src
        src = rasterio.open(path)
        with self._lock:
            self.opened += 1
        handles[path] = src
        while len(handles) > self.max_open:
            _, old = handles.popitem(last=False)
            _close(old)
        return src

    def keep_only(self, paths: Any) -> None:
        """Close this thread's datasets other than ``paths`` (called when it starts another scene)."""
        handles = self._mine()
        keep = set(paths)
        for p in [p for p in handles if p not in keep]:
            _close(handles.pop(p))

    def discard(self, path: str) -> None:
        """Close this thread's dataset for ``path`` (after a read error, so a retry reopens it)."""
        src = self._mine().pop(path, None)
        if src is not None:
            _close(src)

    def close(self) -> None:
        """Close every thread's datasets (only when no thread reads any more)."""
        with self._lock:
            tables, self._all = self._all, []
        for handles in tables:
            while handles:
                _close(handles.popitem()[1])
        self._local = threading.local()

    def __enter__(self) -> DatasetCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close(src: Any) -> None:
    try:
        src.close()
    except Exception:  # noqa: BLE001 - closing a read-only dataset cannot lose data
        log.debug("closing %s failed", getattr(src, "name", src), exc_info=True)
