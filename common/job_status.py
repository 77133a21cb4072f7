"""A job as clients see it: the status model the API returns and webhooks carry, built from RQ.

It lives here, not in `api/`, because the worker's webhook delivery sends the same JSON.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from pydantic import BaseModel, Field, ValidationError
from rq.job import Job

from common.contract import (
    JobMeta,
    Keys,
    Progress,
    PublicStatus,
    StageProgress,
    WebhookState,
    meta_of,
    public_status,
    request_of,
)
from common.fairness import place
from common.transcript import Transcript

log = logging.getLogger(__name__)

ETA_MIN_PERCENT = 1.0
"""Below this much progress a remaining-time estimate would be noise; none is given."""


class WebhookDelivery(WebhookState):
    """Where the job's end is reported, and how that went so far."""

    url: str


class JobStatus(BaseModel):
    """Everything known about a job."""

    job_id: str
    status: PublicStatus
    engine: str | None = None
    model: str | None = None
    language: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    progress: Progress | None = None
    queue_position: int | None = Field(
        default=None, ge=1, description="While queued: 1 means this job runs next."
    )
    eta_s: float | None = Field(
        default=None,
        ge=0,
        description=(
            "While running: estimated seconds until the current stage (progress.stage) is done, "
            "from its percent and the time it has taken so far."
        ),
    )
    webhook: WebhookDelivery | None = Field(
        default=None, description="Present when the job was submitted with a callback_url."
    )
    result: Transcript | None = None
    error: str | None = Field(default=None, description="Why the job failed, for people.")


def readable_error(job: Job, meta: JobMeta | None = None) -> str | None:
    """Why a job failed, in one line: the worker's own message, else the exception line."""
    message = (meta or meta_of(job)).error
    if message:
        return message
    result = job.latest_result()
    exc_string = getattr(result, "exc_string", None)
    if not exc_string:
        return None
    lines = [line for line in str(exc_string).strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else None


def queue_position(job: Job, owner: str | None = None) -> int | None:
    """1-based place in which a queued job will start: on the RQ queue, or, while it waits its
    API key's turn, after the RQ queue and the turns before its own; None when in neither."""
    # LPOS itself: rq's Job.get_position asks Redis for INFO first, on every call.
    queue = Keys(job.origin).queue
    index = job.connection.lpos(queue, job.id)
    if isinstance(index, int):
        return index + 1
    if owner is None:
        return None
    waiting = place(job.connection, job.origin, owner, job.id)
    if waiting is None:
        return None
    return int(job.connection.llen(queue)) + waiting + 1


def eta_s(progress: StageProgress, now: float) -> float | None:
    """Remaining seconds of the current stage, extrapolated linearly from its progress."""
    percent, started = progress.percent, progress.stage_started_at
    if percent is None or started is None or percent < ETA_MIN_PERCENT or percent >= 100:
        return None
    elapsed = max(now - started, 0.0)
    return round(elapsed * (100.0 - percent) / percent, 1)


def webhook_delivery(meta: JobMeta) -> WebhookDelivery | None:
    """The delivery state of a job with a callback_url, else None."""
    if not meta.callback_url:
        return None
    state = meta.webhook or WebhookState()
    return WebhookDelivery(url=meta.callback_url, **state.model_dump())


def describe_job(job: Job, include_result: bool = True, now: float | None = None) -> JobStatus:
    """Map an RQ job to the API's status model; listings leave the transcript out."""
    status = public_status(job)
    meta = meta_of(job)
    request = request_of(job)
    result: Transcript | None = None
    error: str | None = None
    position: int | None = None
    eta: float | None = None
    if status == PublicStatus.FINISHED and include_result:
        try:
            result = Transcript.model_validate(job.return_value())
        except ValidationError:
            log.exception("job %s finished with a result that is not a transcript", job.id)
            error = "the job finished but its result could not be read"
    elif status == PublicStatus.FAILED:
        error = readable_error(job, meta)
    elif status == PublicStatus.QUEUED:
        position = queue_position(job, meta.owner)
    elif status == PublicStatus.STARTED and meta.progress is not None:
        eta = eta_s(meta.progress, time.time() if now is None else now)
    return JobStatus(
        job_id=job.id,
        status=status,
        engine=request.engine.value if request else None,
        model=request.model if request else None,
        language=meta.detected_language or (request.options.language if request else None),
        created_at=job.created_at,
        started_at=job.started_at,
        ended_at=job.ended_at,
        progress=(
            None
            if meta.progress is None
            else Progress(stage=meta.progress.stage, percent=meta.progress.percent)
        ),
        queue_position=position,
        eta_s=eta,
        webhook=webhook_delivery(meta),
        result=result,
        error=error,
    )
