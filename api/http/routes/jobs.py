"""The jobs resource: GET /jobs (newest first, filtered, paged), GET and DELETE /jobs/{job_id}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from api.errors import ServiceError, not_found
from api.http.deps import CallerDep, JobWaiterDep, QueueDep, SettingsDep
from api.http.routes.status import get_status
from api.http.schemas import ErrorBody, JobList, errors
from api.jobs.cancel import cancel_job, erase_job
from api.jobs.index import list_jobs
from api.jobs.long_poll import status_after_wait
from api.jobs.queue import find_job
from common.contract import TERMINAL, PublicStatus, public_status
from common.job_status import JobStatus, describe_job

router = APIRouter(tags=["jobs"])


@router.get(
    "/jobs",
    summary="List jobs, newest first",
    responses={
        422: {"description": "Unknown status, limit out of range or a foreign cursor."},
        **errors({403: "`owner` of another key, from a non-admin key."}),
    },
)
def get_jobs(
    queue: QueueDep,
    caller: CallerDep,
    status: Annotated[PublicStatus | None, Query(description="Only jobs in this state.")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Jobs per page.")] = 20,
    cursor: Annotated[
        str | None, Query(max_length=80, description="`next_cursor` of the previous page.")
    ] = None,
    owner: Annotated[
        str | None, Query(max_length=64, description="Only jobs of this API key (admin keys).")
    ] = None,
) -> JobList:
    """Jobs still kept (see RESULT_TTL_S), newest first, without their transcripts; with API
    keys, only the caller's own (an admin key sees all, or one key's with `owner`).

    With a status filter one request looks at up to 1000 jobs, so a page can come back short
    (even empty) with a `next_cursor` to go on from; only a null `next_cursor` means the end.
    """
    if caller is not None and not caller.admin:
        if owner not in (None, caller.name):
            raise ServiceError(403, "only an admin key can list another key's jobs")
        owner = caller.name
    page = list_jobs(queue, limit, status, cursor, owner)
    jobs = [describe_job(job, include_result=False) for job in page.jobs]
    return JobList(jobs=jobs, next_cursor=page.next_cursor)


router.add_api_route(
    "/jobs/{job_id}",
    get_status,
    methods=["GET"],
    response_model=JobStatus,
    summary="A job's state and result (the same record as /status/{job_id})",
    responses={404: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)


@router.delete(
    "/jobs/{job_id}",
    response_model=JobStatus,
    summary="Cancel a queued or running job; erase an ended one",
    responses={
        202: {"model": JobStatus, "description": "The running job was asked to stop."},
        204: {"description": "The ended job was erased: record, transcript, upload, events."},
        **errors(
            {
                404: "Unknown or expired job (or another key's).",
                409: "The job ended before it could be stopped.",
            }
        ),
    },
)
async def delete_job(
    job_id: str,
    response: Response,
    queue: QueueDep,
    settings: SettingsDep,
    waiter: JobWaiterDep,
    caller: CallerDep,
) -> JobStatus | Response:
    """Cancel the job and delete its upload; its status then says `canceled`. A job that has
    already ended (finished, failed or canceled) is erased for good instead: 204, then 404.

    A queued job is canceled at once (200). A running one is stopped at its next progress
    report; the answer waits up to CANCEL_WAIT_S for that (200 once canceled), else answers 202
    with the job still `started`: poll it.
    """
    job = await run_in_threadpool(find_job, queue, job_id, caller)
    if job is None:
        raise not_found(job_id)
    if public_status(job) in TERMINAL:
        await run_in_threadpool(erase_job, settings, job)
        return Response(status_code=204)
    outcome = await run_in_threadpool(cancel_job, settings, job)
    wait_s = settings.cancel_wait_s if outcome == "stopping" else 0.0
    status = await status_after_wait(queue, waiter, job_id, wait_s, caller)
    if status is None:
        raise not_found(job_id)
    if status.status in (PublicStatus.FINISHED, PublicStatus.FAILED):
        raise ServiceError(409, f"job {job_id} {status.status} before it could be stopped")
    if status.status != PublicStatus.CANCELED:
        response.status_code = 202
    return status
