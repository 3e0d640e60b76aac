"""A writer-preferring readers-writer lock for in-process threads.

hnswlib is not safe under a concurrent ``add_items`` and ``knn_query`` (segfaults
upstream: nmslib/hnswlib#29, #100, #562), while concurrent queries are fine. So
every hnswlib call in :class:`~geovec.backend.index.store.IndexStore` runs
under ``with lock.read():`` (queries, saves) or ``with lock.write():`` (adds,
deletes, resizes). Writers are preferred: once a writer waits, new readers wait
behind it, so a steady stream of searches cannot starve indexing.

The lock is not reentrant: a thread holding it must not acquire it again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class RWLock:
    """Many readers or one writer; waiting writers block new readers."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0  # threads holding the read side
        self._writer = False  # a thread holds the write side
        self._waiting_writers = 0

    def acquire_read(self) -> None:
        """Block until no writer holds or waits for the lock, then take a read share."""
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1

    def release_read(self) -> None:
        """Give back a read share (wakes a waiting writer when it was the last one)."""
        with self._cond:
            if self._readers <= 0:
                raise RuntimeError("release_read() called without a matching acquire_read()")
            self._readers -= 1
            if self._readers == 0:
                self._cond.notify_all()

    def acquire_write(self) -> None:
        """Block until no reader or writer holds the lock, then take it exclusively."""
        with self._cond:
            self._waiting_writers += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._waiting_writers -= 1
            self._writer = True

    def release_write(self) -> None:
        """Give back the exclusive hold and wake everyone waiting."""
        with self._cond:
            if not self._writer:
                raise RuntimeError("release_write() called without a matching acquire_write()")
            self._writer = False
            self._cond.notify_all()

    @contextmanager
    def read(self) -> Iterator[None]:
        """``with lock.read():`` shared access."""
        self.acquire_read()
        try:
            yield
        finally:
            self.release_read()

    @contextmanager
    def write(self) -> Iterator[None]:
        """``with lock.write():`` exclusive access."""
        self.acquire_write()
        try:
            yield
        finally:
            self.release_write()

    @property
    def readers(self) -> int:
        """Threads currently holding a read share (for tests and debugging)."""
        with self._cond:
            return self._readers

    @property
    def writing(self) -> bool:
        """Whether a thread holds the write side."""
        with self._cond:
            return self._writer
