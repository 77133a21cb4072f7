"""GET /status/{job_id}: a job's state, progress and, when finished, its transcript."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from api.deps import QueueDep
from api.jobs import describe_job, fetch_job
from api.schemas import ErrorBody, JobStatus

router = APIRouter(tags=["jobs"])


@router.get(
    "/status/{job_id}",
    response_model=JobStatus,
    summary="A job's state and result",
    responses={404: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
def get_status(job_id: str, queue: QueueDep) -> JobStatus:
    """The job's status, times and progress; the transcript once finished, the reason if failed."""
    job = fetch_job(queue, job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id!r} (unknown, or expired after its TTL)")
    return describe_job(job)
