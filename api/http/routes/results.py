"""GET /result/{job_id}: a finished transcript as json, txt, srt, vtt, tsv or rttm."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.errors import ServiceError, not_found
from api.http.deps import CallerDep, QueueDep
from api.http.schemas import ErrorBody
from api.jobs.queue import find_job
from common.formats import (
    DEFAULT_LAYOUT,
    OutputFormat,
    SubtitleLayout,
    download_filename,
    is_diarized,
    media_type,
    render,
)
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
        409: {
            "model": ErrorBody,
            "description": "The job has not finished (or failed); or rttm for a job that was "
            "not diarized.",
        },
    },
)
def get_result(
    job_id: str,
    queue: QueueDep,
    caller: CallerDep,
    format: OutputFormat = OutputFormat.JSON,
    max_line_width: Annotated[
        int,
        Query(ge=10, le=200, description="srt and vtt: characters per line of a cue at most."),
    ] = DEFAULT_LAYOUT.max_line_width,
    max_line_count: Annotated[
        int, Query(ge=1, le=5, description="srt and vtt: lines per cue at most.")
    ] = DEFAULT_LAYOUT.max_line_count,
    max_cue_duration_s: Annotated[
        float,
        Query(ge=1, le=60, description="srt and vtt: seconds a cue lasts at most."),
    ] = DEFAULT_LAYOUT.max_cue_duration_s,
) -> Response:
    """Render the stored transcript; 409 while the job is queued or running, or if it failed.

    srt and vtt cues are cut at word boundaries where the transcript has word timings (by the
    three layout parameters, and at every change of speaker); segments without words are one
    cue each. rttm needs a diarized job.
    """
    job = find_job(queue, job_id, caller)
    if job is None:
        raise not_found(job_id)
    status = describe_job(job)
    if status.result is None:
        reason = f": {status.error}" if status.error else ""
        raise ServiceError(409, f"job {job_id} is {status.status}, not finished{reason}")
    if format is OutputFormat.RTTM and not is_diarized(status.result):
        raise ServiceError(
            409,
            f"job {job_id} was not diarized, so it has no speaker turns for rttm; submit it "
            "again with diarize=true",
        )
    layout = SubtitleLayout(max_line_width, max_line_count, max_cue_duration_s)
    filename = download_filename(job.id, format)
    return Response(
        render(status.result, format, layout, recording_id=job.id),
        media_type=media_type(format),
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
