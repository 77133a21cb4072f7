"""GET /result/{job_id}: a finished transcript as json, txt, srt, vtt or tsv."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.errors import ServiceError, not_found
from api.http.deps import CallerDep, QueueDep
from api.http.schemas import ErrorBody
from api.jobs.queue import find_job
from common.formats import OutputFormat, download_filename, media_type, render
from common.job_status import describe_job

router = APIRouter(tags=["jobs"])


@router.get(
    "/result/{job_id}",
    summary="Download a finished transcript",
    response_class=Response,
    responses={
        200: {
            "description": "The transcript in the requested format, as an attachment.",
            "content": {media_type(fmt).split(";")[0]: {} for fmt in OutputFormat},
        },
        404: {"model": ErrorBody, "description": "Unknown or expired job."},
        409: {"model": ErrorBody, "description": "The job has not finished (or failed)."},
    },
)
def get_result(
    job_id: str, queue: QueueDep, caller: CallerDep, format: OutputFormat = OutputFormat.JSON
) -> Response:
    """Render the stored transcript; 409 while the job is queued or running, or if it failed."""
    job = find_job(queue, job_id, caller)
    if job is None:
        raise not_found(job_id)
    status = describe_job(job)
    if status.result is None:
        reason = f": {status.error}" if status.error else ""
        raise ServiceError(409, f"job {job_id} is {status.status}, not finished{reason}")
    filename = download_filename(job.id, format)
    return Response(
        render(status.result, format),
        media_type=media_type(format),
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
