"""IndexJobTask: start a backend indexing job and follow it (progress, ETA, cancel)."""

from __future__ import annotations

import time
from collections.abc import Callable

from qgis.PyQt.QtCore import pyqtSignal

from ..client import BackendError, GeoVecClient
from ..params import Connection, IndexParams, empty_folder_message, indexed_nothing
from ..wording import gui_text
from .base import GeoVecTask

DONE_STATES = {"done", "failed", "cancelled", "interrupted"}


def describe(job: dict) -> str:
    """One status line: tiles, rate, ETA, current file."""
    done, total = job.get("tiles_done", 0), job.get("tiles_total", 0)
    text = f"{job.get('state', '?')}: {done}/{total} tiles"
    if job.get("tiles_per_s"):
        text += f", {job['tiles_per_s']:.1f} tiles/s"
    if job.get("eta_s") is not None and job.get("state") == "running":
        eta = int(job["eta_s"])
        text += f", ETA {eta // 60}:{eta % 60:02d}"
    if job.get("current_file"):
        text += f" — {job['current_file'].replace(chr(92), '/').rsplit('/', 1)[-1]}"
    return text


class IndexJobTask(GeoVecTask):
    """``POST /v1/jobs`` then poll ``GET /v1/jobs/{id}`` until done; cancel cancels the job.

    ``result`` is the final JobProgress dict; ``file_errors`` its per-file errors.
    """

    status = pyqtSignal(str)  # one-line progress (queued to the UI thread)

    def __init__(self, conn: Connection, params: IndexParams,
                 on_done: Callable[[GeoVecTask], None] | None = None, poll_s: float = 0.5,
                 job_id: str | None = None) -> None:
        super().__init__(f"GeoVec index {params.folder}", on_done)
        self.conn = conn
        self.params = params
        self.poll_s = poll_s
        self.job_id: str | None = job_id  # given: follow a job the backend already runs (resumed)
        self.eta_s: float | None = None
        self.file_errors: list[dict] = []

    def work(self) -> dict:
        client = GeoVecClient(self.conn)
        job = client.job(self.job_id) if self.job_id else client.start_job(self.params)
        self.job_id = job["job_id"]
        cancel_sent = False
        while True:
            self._report(job)
            if job.get("state") in DONE_STATES:
                break
            if self.isCanceled() and not cancel_sent:
                job = client.cancel_job(self.job_id)
                cancel_sent = True
                continue
            time.sleep(self.poll_s)
            job = client.job(self.job_id)
        self.file_errors = list(job.get("errors") or [])
        state = job.get("state")
        if state == "failed":
            said = str(job.get("message") or "no message")
            error = BackendError(f"indexing job failed: {gui_text(said)}",
                                 "see the GeoVec tab of the log panel; fix the files listed and run the job again")
            error.details = f"backend said: {said}" if gui_text(said) != said else ""
            raise error
        if state == "interrupted":
            raise BackendError("indexing job was interrupted", "run it again: it resumes where it stopped")
        if indexed_nothing(job):
            raise BackendError(empty_folder_message(self.params.folder))
        return job

    def _report(self, job: dict) -> None:
        total = job.get("tiles_total") or 0
        if total:
            self.setProgress(min(100.0, 100.0 * job.get("tiles_done", 0) / total))
        self.eta_s = job.get("eta_s")
        self.status.emit(describe(job))
