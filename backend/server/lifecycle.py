"""``geovec serve --parent-pid``: stop the server when the process that started it is gone.

A client such as the QGIS plugin starts the backend with its own pid. A daemon thread
checks every ``interval_s`` whether that process still runs and, once it does not,
asks uvicorn for a graceful shutdown (jobs are stopped and marked ``interrupted``, the
token file removed). A server started by hand has no parent pid and is never stopped.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def _zombie(pid: int) -> bool:
    """True when Linux reports ``pid`` as a zombie (exited, not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]


def _alive_windows(pid: int) -> bool:
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x00100000 | 0x1000, False, pid)  # SYNCHRONIZE | QUERY_LIMITED_INFORMATION
    if not handle:
        return False
    try:
        return bool(kernel32.WaitForSingleObject(handle, 0) == 0x00000102)  # WAIT_TIMEOUT: still running
    finally:
        kernel32.CloseHandle(handle)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie counts as gone)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        return _alive_windows(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


class ParentWatch:
    """Calls ``on_gone`` once, from a daemon thread, when process ``pid`` has ended."""

    def __init__(self, pid: int, on_gone: Callable[[], None], interval_s: float = 0.5) -> None:
        self.pid = pid
        self.on_gone = on_gone
        self.interval_s = interval_s
        # our own parent: its death re-parents us, which also catches a reused pid
        self.is_parent = sys.platform != "win32" and os.getppid() == pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="parent-watch", daemon=True)

    def gone(self) -> bool:
        if self.is_parent and os.getppid() != self.pid:
            return True
        return not process_alive(self.pid)

    def start(self) -> ParentWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self.gone():
                log.warning("parent process %s is gone: shutting down", self.pid)
                self.on_gone()
                return


def exit_now(code: int) -> None:
    """Flush the logs and end the process at once (after a completed graceful shutdown)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def watch_parent(pid: int, on_gone: Callable[[], None], grace_s: float = 30.0) -> ParentWatch:
    """Start a :class:`ParentWatch`; if the graceful stop hangs for ``grace_s``, exit the process."""

    def stop() -> None:
        on_gone()
        time.sleep(grace_s)  # daemon thread: only reached when the graceful shutdown hangs
        log.error("graceful shutdown took over %.0f s after the parent died: exiting", grace_s)
        os._exit(3)

    return ParentWatch(pid, stop).start()
