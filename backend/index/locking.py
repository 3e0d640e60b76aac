"""``writer.lock``: one writer per index directory across processes, on every OS.

The lock is a :class:`filelock.FileLock` (``flock`` on Linux/macOS, ``LockFileEx``
through ``msvcrt`` on Windows, a lock file where neither exists); it is held from
``IndexStore.open(writable=True)`` / ``create`` until ``close``. The holder
writes its pid into the file so a refused writer can say who holds it. Kernel
locks are dropped when the holder dies (even by SIGKILL), so a crashed writer
never leaves the index locked.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from filelock import FileLock, Timeout

from ..errors import BusyError
from .files import LOCK

log = logging.getLogger(__name__)
#: A writer waits this long for the lock: a reader's :meth:`WriterLock.holder` probe holds it for microseconds.
ACQUIRE_WAIT_S = 0.25


def _read_pid(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(32).decode("ascii", "replace").strip() or "unknown"
    except OSError:  # Windows: the holder's locked byte cannot be read
        return "unknown"


def _new_lock(path: Path) -> FileLock:
    return FileLock(str(path), timeout=0, thread_local=False)


class WriterLock:
    """An exclusive, non-blocking lock on ``DIR/writer.lock``."""

    def __init__(self, path: Path, lock: FileLock) -> None:
        self.path = path
        self._lock: FileLock | None = lock

    @classmethod
    def acquire(cls, index_dir: Path) -> WriterLock:
        """Take the lock or raise BusyError naming the holder's pid."""
        path = index_dir / LOCK
        lock = _new_lock(path)
        try:
            lock.acquire(timeout=ACQUIRE_WAIT_S)
        except Timeout as e:
            raise BusyError(f"index {index_dir} is being written by another process (pid {_read_pid(path)})",
                            "wait for that indexing run to finish (or stop it), then retry") from e
        try:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            finally:
                os.close(fd)
        except OSError:  # Windows: the locked byte range cannot be written through another handle
            log.debug("could not record the pid in %s", path)
        return cls(path, lock)

    @staticmethod
    def holder(index_dir: Path) -> str | None:
        """The pid (text) of the process writing ``index_dir`` now, or None when nobody holds its lock.

        Never creates anything: without a lock file (or where it cannot be opened) nobody holds it.
        """
        path = index_dir / LOCK
        if not path.exists():
            return None
        lock = _new_lock(path)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return _read_pid(path)
        except OSError:
            return None
        lock.release()
        return None

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release(force=True)
