"""Blocking "connect or start" for worker threads (Processing algorithms, ``qgis_process``).

The dock uses the asynchronous :class:`~.backend_manager.BackendManager`; an algorithm
runs in a worker thread (or in ``qgis_process`` with no dock at all), so it may wait.
Both start the same command against the same token file, so they share one backend.
"""

from __future__ import annotations

import logging
import time

from qgis.core import QgsFeedback

from . import backend_manager as bm
from .client import BackendError, GeoVecClient, read_token_file
from .params import Connection
from .settings import Setting

log = logging.getLogger(__name__)


def _answers(conn: Connection, feedback: QgsFeedback | None) -> bool:
    try:
        GeoVecClient(conn, feedback).health()
        return True
    except BackendError:
        return False


def ensure_backend(feedback: QgsFeedback | None = None) -> Connection:
    """A connection that answers ``/health``: the running backend, else one started now.

    Raises :class:`BackendError` (message + hint for a GUI user) when none can be had.
    """
    conn = bm.current_connection()
    if conn is not None and _answers(conn, feedback):
        return conn
    if not Setting.AUTO_START.get():
        raise BackendError("No GeoVec backend is running",
                           "open the GeoVec dock and press Connect, or turn on 'Start the backend when none "
                           "answers' in GeoVec > Settings")
    with bm._start_lock:
        conn = bm.current_connection()
        if conn is not None and _answers(conn, feedback):
            return conn
        cmd, tried = bm.find_command()
        if not cmd:
            raise BackendError("No GeoVec backend is running and none was found (looked at: " + "; ".join(tried)
                               + ")", "install one with GeoVec > Set up backend")
        token = bm.token_path()
        log_path = bm.backend_log_path()
        try:
            proc = bm.spawn(bm.serve_args(cmd, token), log_path)
        except OSError as e:
            raise BackendError(f"Could not start the GeoVec backend: {e}",
                               "check the backend command in GeoVec > Settings") from e
        deadline = time.monotonic() + float(Setting.START_TIMEOUT_S.get())
        while time.monotonic() < deadline:
            if feedback is not None and feedback.isCanceled():
                bm.stop_process(proc)
                raise BackendError("Canceled while the GeoVec backend was starting")
            code = proc.poll()
            if code is not None:
                raise BackendError(f"The GeoVec backend exited at start (code {code})",
                                   f"see the GeoVec log in {log_path}")
            data = read_token_file(token)
            if data and int(data.get("pid") or -1) == proc.pid:
                conn = Connection(data["url"], data.get("token", ""))
                if _answers(conn, feedback):
                    if feedback is not None:
                        feedback.pushInfo(f"Started the GeoVec backend at {conn.base}")
                    return conn
            time.sleep(0.2)
        bm.stop_process(proc)
        raise BackendError("The GeoVec backend did not answer in time",
                           "raise the start timeout in GeoVec > Settings")
