"""GET /result/{job_id}: a finished transcript as json, txt, srt, vtt or tsv."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response

from api.deps import QueueDep
from api.jobs import describe_job, fetch_job
from api.schemas import ErrorBody
from common.formats import OutputFormat, download_filename, media_type, render

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
def get_result(job_id: str, queue: QueueDep, format: OutputFormat = OutputFormat.JSON) -> Response:
    """Render the stored transcript; 409 while the job is queued or running, or if it failed."""
    job = fetch_job(queue, job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id!r} (unknown, or expired after its TTL)")
    status = describe_job(job)
    if status.result is None:
        reason = f": {status.error}" if status.error else ""
        raise HTTPException(409, f"job {job_id} is {status.status}, not finished{reason}")
    filename = download_filename(job.id, format)
    return Response(
        render(status.result, format),
        media_type=media_type(format),
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
