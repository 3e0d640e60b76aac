"""``writer.lock``: one writer per index directory across processes (fcntl.flock).

The lock is held from ``IndexStore.open(writable=True)`` / ``create`` until
``close``; the holder writes its pid into the file so a refused writer can say
who holds it. The kernel drops the lock when the holder dies (even by SIGKILL),
so a crashed writer never leaves the index locked.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import BusyError
from .files import LOCK

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no cross-process lock
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)


class WriterLock:
    """An exclusive, non-blocking flock on ``DIR/writer.lock``."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, index_dir: Path) -> WriterLock:
        """Take the lock or raise BusyError naming the holder's pid."""
        path = index_dir / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:  # pragma: no cover
            log.warning("no fcntl on this platform: %s does not guard against a second writer", path)
            return cls(path, fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            try:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise BusyError(f"index {index_dir} is being written by another process (pid {holder})",
                            "wait for that indexing run to finish (or stop it), then retry") from e
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
