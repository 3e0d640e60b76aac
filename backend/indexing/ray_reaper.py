"""Leave no Ray process behind: a watchdog for the local Ray a driver starts.

``ray.init()`` without an address starts a head node (GCS server, raylet, agents, workers)
as the driver's descendants. When the driver exits normally, ``ray.shutdown()`` stops them;
when it is killed (SIGKILL, OOM killer) nothing in it runs, and Ray's agents and workers
stay behind. :func:`start` launches this module as a small process in its own session,
holding the read end of a pipe whose write end only the driver holds. While the pipe is
open it notes the driver's descendants (GCS, raylet...) every half second; when the pipe
closes (the driver exited, however it died) it terminates those still running and every
process under them (agents and workers are the raylet's children), then kills what did
not stop within a few seconds. Processes are matched by pid *and* start time, so a reused
pid is never touched.

Only Ray's processes are stopped: the driver's children whose command line names Ray, and
everything under them. Run as ``python ray_reaper.py DRIVER_PID`` (stdin: the pipe).
"""

from __future__ import annotations

import logging
import os
import select
import subprocess
import sys
from typing import Any

log = logging.getLogger(__name__)

#: How often the driver's descendants are noted (seconds).
POLL_S = 0.5
#: How long stopped processes get to exit after SIGTERM before SIGKILL (seconds).
GRACE_S = 5.0


def start() -> subprocess.Popen[bytes] | None:
    """Launch the watchdog for this process (None where it cannot run: no psutil, or not POSIX).

    Keep the returned object referenced for the life of the driver: its stdin is the pipe.
    """
    if os.name != "posix" or _psutil() is None:
        log.info("no Ray watchdog here (needs POSIX and psutil); a killed driver may leave Ray processes")
        return None
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), str(os.getpid())],  # stdlib + psutil only
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)


def _psutil() -> Any:
    """psutil, from the environment or the copy Ray ships in ``ray/thirdparty_files``; None if neither."""
    try:
        import psutil
    except ImportError:
        import importlib.util

        spec = importlib.util.find_spec("ray")
        for base in (spec.submodule_search_locations or []) if spec else []:
            sys.path.append(os.path.join(base, "thirdparty_files"))
        try:
            import psutil
        except ImportError:
            return None
    return psutil


def watch(driver_pid: int, pipe_fd: int = 0) -> int:
    """Note the driver's descendants until ``pipe_fd`` closes, then stop them; returns how many were stopped."""
    psutil = _psutil()
    me = os.getpid()
    try:
        driver = psutil.Process(driver_pid)
    except psutil.Error:
        return 0
    known: dict[int, Any] = {}
    while True:
        try:
            for p in driver.children(recursive=True):
                if p.pid != me and p.pid not in known and _is_ray(p):
                    known[p.pid] = p
        except psutil.Error:
            pass  # the driver is gone; the pipe is about to say so
        ready, _, _ = select.select([pipe_fd], [], [], POLL_S)
        if ready and not os.read(pipe_fd, 4096):
            break  # EOF: the driver exited (or was killed)
    return stop(list(known.values()), psutil, me)


def _is_ray(p: Any) -> bool:
    """Whether ``p`` is one of Ray's processes (gcs_server, raylet, its agents, ``ray::`` workers)."""
    try:
        text = " ".join([p.name(), *p.cmdline()]).lower()
    except Exception:  # noqa: BLE001 - gone, or not ours to read
        return False
    return "ray" in text


def stop(roots: list[Any], psutil: Any, me: int) -> int:
    """SIGTERM ``roots`` still running and everything under them; SIGKILL what outlives :data:`GRACE_S`."""
    procs: dict[int, Any] = {}
    for p in roots:
        try:
            if not p.is_running():  # is_running compares the start time too: a reused pid is not ours
                continue
            procs[p.pid] = p
            for c in p.children(recursive=True):
                procs.setdefault(c.pid, c)
        except psutil.Error:
            continue
    procs.pop(me, None)
    for p in procs.values():
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(list(procs.values()), timeout=GRACE_S)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=GRACE_S)
    return len(procs)


if __name__ == "__main__":
    sys.exit(0 if watch(int(sys.argv[1])) >= 0 else 1)
