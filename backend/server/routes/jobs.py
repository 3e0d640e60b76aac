"""``/v1/jobs``: start indexing a folder in the background, follow it, cancel it, resume it."""

from __future__ import annotations

from fastapi import APIRouter, Path

from ...schemas import IndexRequest, JobProgress
from ..deps import ERRORS, State

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=ERRORS)
JobId = Path(min_length=1, max_length=64, description="job id from POST /v1/jobs")


@router.post("", response_model=JobProgress, status_code=202)
def start_job(body: IndexRequest, state: State) -> JobProgress:
    """Index ``folder`` into ``index`` on a background thread (one writer per index: 409 otherwise)."""
    return state.jobs.start(body)


@router.get("", response_model=list[JobProgress])
def list_jobs(state: State) -> list[JobProgress]:
    return state.jobs.list()


@router.get("/{job_id}", response_model=JobProgress)
def get_job(state: State, job_id: str = JobId) -> JobProgress:
    return state.jobs.get(job_id)


@router.post("/{job_id}/cancel", response_model=JobProgress)
def cancel_job(state: State, job_id: str = JobId) -> JobProgress:
    """Stop after the current batch; tiles written so far stay in the index."""
    return state.jobs.cancel(job_id)


@router.post("/{job_id}/resume", response_model=JobProgress)
def resume_job(state: State, job_id: str = JobId) -> JobProgress:
    """Restart an interrupted, cancelled or failed job; tiles already stored are skipped."""
    return state.jobs.resume(job_id)
