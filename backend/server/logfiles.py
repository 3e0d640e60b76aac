"""Private log files: created 0600 in a 0700 folder, rotations included.

Logs name the files a user indexes and searches; on a shared machine they are
nobody else's business. The token never goes to a log or to the console: it is
only in the token file (0600).
"""

from __future__ import annotations

import logging.handlers
import os
from pathlib import Path
from typing import IO, Any

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make it 0700 (best effort where modes do not apply)."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    try:
        os.chmod(path, DIR_MODE)
    except OSError:
        pass
    return path


def open_private(path: Path, mode: str = "a", encoding: str | None = "utf-8") -> IO[Any]:
    """Open ``path`` for appending/writing, created 0600 (an existing file is made 0600 too)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except (OSError, AttributeError):  # Windows: no POSIX modes
        pass
    if "b" in mode:
        return os.fdopen(fd, mode)
    return os.fdopen(fd, mode, encoding=encoding)


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler whose files (the first and every rollover) are created 0600."""

    def _open(self) -> IO[Any]:  # type: ignore[override]
        return open_private(Path(self.baseFilename), self.mode, self.encoding)
