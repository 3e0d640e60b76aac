"""Indexing jobs: one background thread each, persisted so a restarted server can resume them.

A job runs ``service.run_index`` on a daemon thread, so it outlives the HTTP
request (and the client) that started it. At most one job writes an index at a
time (``BusyError`` otherwise; across processes the index's ``writer.lock``
refuses a second writer too). Every state change, and progress at most every
``SAVE_EVERY_S``, is written atomically to ``<data dir>/jobs.json``.

Resume policy: when the server starts, jobs the file lists as ``queued`` or
``running`` (the previous server died: SIGKILL, power loss) are marked
``interrupted``; with ``auto_resume`` (the default; ``--no-resume`` /
``GEOVEC_AUTO_RESUME=0`` turns it off) they are restarted at once under the
same id. Any ``interrupted``, ``cancelled`` or ``failed`` job can be restarted
with ``POST /v1/jobs/{id}/resume``. A resumed run skips the tiles already
stored (the pipeline's tile ids are unique), so it ends with exactly the tiles
of an uninterrupted run. A graceful shutdown cancels running jobs after their
current batch (the index is checkpointed and closed) and leaves them
``interrupted``, so they resume at the next start.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from ..errors import BusyError, GeoVecError, InputError, NotFoundError
from ..schemas import IndexRequest, JobProgress
from .paths import check_path
from .settings import Settings

if TYPE_CHECKING:
    from ..indexing import ProgressEvent
    from ..model.embedder import Embedder

log = logging.getLogger(__name__)
SAVE_EVERY_S = 2.0
KEEP_FINISHED = 200
ACTIVE = ("queued", "running")
RESUMABLE = ("interrupted", "cancelled", "failed")


class ModelProvider(Protocol):
    """What a job needs of the server's model slot (``state.ModelSlot``)."""

    @property
    def loaded(self) -> bool: ...

    def acquire(self, spec: str | None = None) -> Any: ...

    def release(self) -> None: ...


@dataclass
class Job:
    """One indexing job: its request, its public progress and its thread."""

    request: IndexRequest
    progress: JobProgress
    created: float = field(default_factory=time.time)
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    stop_reason: str | None = None  # "user" | "shutdown"
    runs: int = 0

    @property
    def active(self) -> bool:
        return self.progress.state in ACTIVE


def atomic_write_json(path: Path, data: Any, mode: int = 0o600) -> None:
    """Write ``data`` as JSON to ``path`` via a same-folder temp file, fsync and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class JobManager:
    """Starts, tracks, cancels, persists and resumes indexing jobs."""

    def __init__(self, settings: Settings, models: ModelProvider) -> None:
        self.settings = settings
        self.models = models
        self.jobs: dict[str, Job] = {}
        self._lock = threading.RLock()
        self._save_lock = threading.Lock()
        self._last_save = 0.0
        self._seq = self._written = 0
        self._closing = False

    # ------------------------------------------------------------ public API

    def load(self) -> None:
        """Read the jobs file; mark jobs the last server left running as interrupted; maybe resume."""
        path = self.settings.jobs_file
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError, RecursionError) as e:
            log.warning("ignoring unreadable jobs file %s: %s", path, type(e).__name__ if isinstance(e, RecursionError) else e)
            return
        for item in raw.get("jobs", []) if isinstance(raw, dict) else []:
            try:
                job = Job(IndexRequest(**item["request"]), JobProgress(**item["progress"]),
                          created=float(item.get("created", time.time())), runs=int(item.get("runs", 1)))
            except Exception as e:  # noqa: BLE001 - one bad record does not stop the server
                log.warning("ignoring a bad job record in %s: %s", path, e)
                continue
            if job.progress.state in ACTIVE:
                job.progress.state = "interrupted"
                job.progress.message = "the server stopped while this job ran; it can be resumed"
            self.jobs[job.progress.job_id] = job
        self._save(force=True)
        if self.settings.auto_resume:
            for job in list(self.jobs.values()):
                if job.progress.state == "interrupted":
                    log.info("resuming interrupted job %s (%s)", job.progress.job_id, job.request.index)
                    self._launch(job, "resumed after the server restarted")

    def start(self, req: IndexRequest) -> JobProgress:
        """Validate paths, refuse a second writer, start the job; returns its first progress."""
        req = self._checked(req)
        with self._lock:
            self._refuse_busy(req.index)
            job_id = uuid.uuid4().hex[:12]
            job = Job(req, JobProgress(job_id=job_id, index=req.index, folder=req.folder, state="queued"))
            self.jobs[job_id] = job
            self._launch(job, "queued")
            return self._snapshot(job)

    def get(self, job_id: str) -> JobProgress:
        return self._snapshot(self._job(job_id))

    def list(self) -> list[JobProgress]:
        with self._lock:
            jobs = sorted(self.jobs.values(), key=lambda j: j.created)
        return [self._snapshot(j) for j in jobs]

    def cancel(self, job_id: str) -> JobProgress:
        """Ask a job to stop after its current batch (what was written is kept)."""
        job = self._job(job_id)
        with self._lock:
            if job.active:
                job.stop_reason = "user"
                job.cancel.set()
                job.progress.message = "cancelling after the current batch"
        return self._snapshot(job)

    def resume(self, job_id: str) -> JobProgress:
        job = self._job(job_id)
        with self._lock:
            if job.progress.state not in RESUMABLE:
                raise BusyError(f"job {job_id} is {job.progress.state}; only {', '.join(RESUMABLE)} jobs resume",
                                "start a new job with POST /v1/jobs to update a finished index")
            self._refuse_busy(job.request.index, except_id=job_id)
            self._launch(job, "resumed")
            return self._snapshot(job)

    def writing(self, index: str | Path) -> bool:
        """True while a job writes the index at ``index``."""
        key = str(Path(index).expanduser().resolve())
        with self._lock:
            return any(j.active and j.request.index == key for j in self.jobs.values())

    def shutdown(self, timeout: float = 60.0) -> None:
        """Cancel running jobs after their current batch, wait for them, leave them interrupted."""
        self._closing = True
        with self._lock:
            running = [j for j in self.jobs.values() if j.active]
            for job in running:
                job.stop_reason = "shutdown"
                job.cancel.set()
        deadline = time.monotonic() + timeout
        for job in running:
            if job.thread is not None:
                job.thread.join(max(0.1, deadline - time.monotonic()))
            if job.active:  # still busy (e.g. loading the model): resumable at the next start
                job.progress.state = "interrupted"
                job.progress.message = "the server shut down; the job resumes at the next start"
        self._save(force=True)

    # ------------------------------------------------------------ internals

    def _checked(self, req: IndexRequest) -> IndexRequest:
        folder = check_path(req.folder, "folder", self.settings)
        index = check_path(req.index, "index", self.settings)
        if not folder.is_dir():
            raise NotFoundError(f"folder {req.folder!r} does not exist or is not a folder",
                                "give a folder containing .tif/.tiff/.vrt rasters")
        if index == folder or folder.is_relative_to(index):
            raise InputError(f"index {req.index!r} would contain the folder being indexed",
                             "put the index in its own directory, outside the rasters' folder")
        groups = None
        if req.groups is not None:
            groups = {name: [str(check_path(p, f"group {name!r} file", self.settings)) for p in paths]
                      for name, paths in req.groups.items()}
        return req.model_copy(update={"folder": str(folder), "index": str(index), "groups": groups})

    def _refuse_busy(self, index: str, except_id: str | None = None) -> None:
        for j in self.jobs.values():
            if j.active and j.request.index == index and j.progress.job_id != except_id:
                raise BusyError(f"job {j.progress.job_id} is already writing index {index}",
                                f"wait for it, or cancel it with POST /v1/jobs/{j.progress.job_id}/cancel")

    def _job(self, job_id: str) -> Job:
        with self._lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id[:100]!r}", "list jobs with GET /v1/jobs")
        return job

    def _snapshot(self, job: Job) -> JobProgress:
        with self._lock:
            return job.progress.model_copy(deep=True)

    def _launch(self, job: Job, message: str) -> None:
        if self._closing:
            raise BusyError("the server is shutting down", "start the job again once the server is back")
        job.cancel = threading.Event()
        job.stop_reason = None
        job.runs += 1
        p = job.progress
        p.state, p.message, p.summary, p.eta_s, p.current_file = "queued", message, None, None, None
        p.tiles_done, p.tiles_total, p.tiles_per_s, p.errors = 0, 0, 0.0, []
        job.thread = threading.Thread(target=self._run, args=(job,), name=f"geovec-job-{p.job_id}", daemon=True)
        self._save(force=True)
        job.thread.start()

    def _run(self, job: Job) -> None:
        from ..service import run_index

        p = job.progress
        slot = self.models
        try:
            emb = slot.acquire(self._model_for(job.request))
        except GeoVecError as e:
            self._finish(job, "failed", str(e))
            return
        except Exception as e:  # noqa: BLE001 - a job never takes the server down
            log.exception("job %s: loading the model failed", p.job_id)
            self._finish(job, "failed", f"unexpected {type(e).__name__}: {e}")
            return
        try:
            if job.cancel.is_set():
                self._finish(job, *self._stopped(job))
                return
            with self._lock:
                p.state = "running"
            self._save(force=True)
            from ..paths import confined

            with confined(self.settings.allowed_roots):  # every raster (and VRT source) under the roots
                # the request through the path gate again: a job resumed after a restart, with other roots
                IndexRequest.model_validate(job.request.model_dump())
                summary = run_index(job.request, cast("Embedder", emb),  # a lock-serialised proxy, same interface
                                    progress=lambda ev: self._on_progress(job, ev), cancel=job.cancel)
            with self._lock:
                p.summary = summary
                p.errors = list(summary.errors)
            if summary.cancelled:
                self._finish(job, *self._stopped(job))
            else:
                self._finish(job, "done", f"indexed {summary.tiles} tile(s) in {summary.seconds:.1f} s"
                             + (f", {len(summary.errors)} file error(s)" if summary.errors else ""))
        except GeoVecError as e:
            log.info("job %s failed: %s", p.job_id, e)
            self._finish(job, "failed", str(e))
        except Exception as e:  # noqa: BLE001
            log.exception("job %s failed unexpectedly", p.job_id)
            self._finish(job, "failed", f"unexpected {type(e).__name__}: {e}")
        finally:
            slot.release()

    def _model_for(self, req: IndexRequest) -> str | None:
        """``req.model``; else, with no model loaded or configured, the model an existing index was built with."""
        if req.model or self.models.loaded or self.settings.model:
            return req.model
        sidecar = Path(req.index) / "index.json"
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
            return str(meta.get("checkpoint") or meta.get("preset") or "") or None
        except (OSError, ValueError, AttributeError, RecursionError):
            return None

    def _stopped(self, job: Job) -> tuple[str, str]:
        if job.stop_reason == "shutdown":
            return "interrupted", "the server shut down; the job resumes at the next start"
        return "cancelled", "cancelled; the tiles written so far are kept (POST .../resume to finish)"

    def _on_progress(self, job: Job, ev: ProgressEvent) -> None:
        with self._lock:
            p = job.progress
            p.tiles_done, p.tiles_total = int(ev.tiles_done), int(ev.tiles_total)
            p.tiles_per_s = round(float(ev.tiles_per_s), 3)
            p.eta_s = None if ev.eta_s is None else round(float(ev.eta_s), 1)
            p.current_file = ev.current_file
            if ev.message:
                p.message = ev.message
        self._save()

    def _finish(self, job: Job, state: str, message: str) -> None:
        with self._lock:
            job.progress.state = state  # type: ignore[assignment]
            job.progress.message = message
            job.progress.eta_s = None if state != "done" else 0.0
        log.info("job %s %s: %s", job.progress.job_id, state, message)
        self._save(force=True)

    def _save(self, force: bool = False) -> None:
        """Persist every job (snapshot under the job lock, write under the file lock, newest wins)."""
        now = time.monotonic()
        if not force and now - self._last_save < SAVE_EVERY_S:
            return
        self._last_save = now
        with self._lock:
            self._seq += 1
            seq = self._seq
            jobs = sorted(self.jobs.values(), key=lambda j: j.created)
            finished = [j for j in jobs if not j.active]
            drop = {id(j) for j in finished[: max(0, len(finished) - KEEP_FINISHED)]}
            data = {"version": 1, "jobs": [
                {"request": j.request.model_dump(), "progress": j.progress.model_dump(mode="json"),
                 "created": j.created, "runs": j.runs} for j in jobs if id(j) not in drop]}
        with self._save_lock:
            if seq < self._written:
                return
            try:
                atomic_write_json(self.settings.jobs_file, data)
                self._written = seq
            except OSError as e:
                log.warning("could not save jobs to %s: %s", self.settings.jobs_file, e)
