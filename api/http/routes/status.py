"""GET /status/{job_id}: a job's state, progress and, when finished, its transcript."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.errors import not_found
from api.http.deps import CallerDep, JobWaiterDep, QueueDep
from api.http.schemas import ErrorBody
from api.jobs.long_poll import MAX_WAIT_S, status_after_wait
from common.job_status import JobStatus

router = APIRouter(tags=["jobs"])

WaitQuery = Annotated[
    float,
    Query(
        ge=0,
        le=MAX_WAIT_S,
        description=(
            "Long-poll: answer as soon as the job ends (finished, failed, canceled, stopped) or "
            "after this many seconds, whichever is first. 0 answers at once."
        ),
    ),
]


@router.get(
    "/status/{job_id}",
    response_model=JobStatus,
    summary="A job's state and result",
    responses={404: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
async def get_status(
    job_id: str, queue: QueueDep, waiter: JobWaiterDep, caller: CallerDep, wait: WaitQuery = 0
) -> JobStatus:
    """The job's status, times and progress; the transcript once finished, the reason if failed."""
    status = await status_after_wait(queue, waiter, job_id, wait, caller)
    if status is None:
        raise not_found(job_id)
    return status
