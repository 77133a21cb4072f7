"""A job as clients see it: the status model the API returns and webhooks carry, built from RQ.

It lives here, not in `api/`, because the worker's webhook delivery sends the same JSON.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError
from redis.exceptions import ResponseError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.job import JobStatus as RQStatus

from common.transcript import Transcript

log = logging.getLogger(__name__)

ETA_MIN_PERCENT = 1.0
"""Below this much progress a remaining-time estimate would be noise; none is given."""

PUBLIC_STATUS: dict[str, str] = {"stopped": "canceled"}
"""RQ states shown under another name: a running job is only ever stopped by a cancel."""


class Progress(BaseModel):
    """How far a job has come."""

    stage: str = Field(description="queued, loading_model, decoding, transcribing, aligning, done")
    percent: float | None = Field(default=None, ge=0, le=100)


class WebhookDelivery(BaseModel):
    """Where the job's end is reported, and how that went so far."""

    url: str
    state: Literal["pending", "retrying", "delivered", "failed"] = Field(
        default="pending",
        description=(
            "pending until the job ends and the first attempt is made; retrying after a failed "
            "attempt with attempts left; delivered (2xx); failed when no attempt is left or the "
            "receiver refused for good"
        ),
    )
    attempts: int = Field(default=0, ge=0)
    last_attempt_at: datetime | None = None
    last_status_code: int | None = Field(
        default=None, description="HTTP status of the last attempt, if one came back."
    )
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None


class JobStatus(BaseModel):
    """Everything known about a job."""

    job_id: str
    status: str = Field(
        description="queued, started, finished, failed, canceled; also deferred and scheduled"
    )
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


def load_job(queue: Queue, job_id: str) -> Job | None:
    """The saved job `job_id` of `queue`, or None; a miss changes nothing in Redis.

    Never use rq's `Queue.fetch_job` for a job that may not be saved yet or may be gone: on a
    miss it removes the id from the queue's list, so a lookup racing an enqueue (the hash and
    the list entry are written in one transaction, after the lookup's read) loses that job.
    """
    try:
        job = Job.fetch(job_id, connection=queue.connection, serializer=queue.serializer)
    except NoSuchJobError:
        return None
    return job if job.origin == queue.name else None


def public_status(job: Job) -> str:
    """The job's state as the API names it (RQ's `stopped` is `canceled`)."""
    status = job.get_status(refresh=False)
    name = str(status.value if isinstance(status, RQStatus) else status)
    return PUBLIC_STATUS.get(name, name)


def readable_error(job: Job) -> str | None:
    """Why a job failed, in one line: the worker's own message, else the exception line."""
    message = job.meta.get("error")
    if isinstance(message, str) and message:
        return message
    result = job.latest_result()
    exc_string = getattr(result, "exc_string", None)
    if not exc_string:
        return None
    lines = [line for line in str(exc_string).strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else None


def queue_position(job: Job) -> int | None:
    """1-based place of a queued job in its queue, or None when it is not in the list."""
    key = Queue.redis_queue_namespace_prefix + job.origin
    try:
        index = job.connection.lpos(key, job.id)
    except ResponseError:  # a Redis before 6.0.6
        index = Queue(job.origin, connection=job.connection).get_job_position(job.id)
    return index + 1 if isinstance(index, int) else None


def eta_s(progress_meta: dict[str, Any], now: float) -> float | None:
    """Remaining seconds of the current stage, extrapolated linearly from its progress."""
    percent = progress_meta.get("percent")
    started = progress_meta.get("stage_started_at")
    if not isinstance(percent, int | float) or not isinstance(started, int | float):
        return None
    if percent < ETA_MIN_PERCENT or percent >= 100:
        return None
    elapsed = max(now - float(started), 0.0)
    return round(elapsed * (100.0 - percent) / percent, 1)


def webhook_delivery(meta: dict[str, Any]) -> WebhookDelivery | None:
    """The delivery state stored in a job's meta, or None when it has no callback_url."""
    url = meta.get("callback_url")
    if not isinstance(url, str) or not url:
        return None
    state = meta.get("webhook")
    return WebhookDelivery.model_validate(
        {**(state if isinstance(state, dict) else {}), "url": url}
    )


def describe_job(job: Job, include_result: bool = True, now: float | None = None) -> JobStatus:
    """Map an RQ job to the API's status model; listings leave the transcript out."""
    status = public_status(job)
    meta: dict[str, Any] = job.meta
    progress_meta = meta.get("progress")
    progress = Progress.model_validate(progress_meta) if isinstance(progress_meta, dict) else None
    result: Transcript | None = None
    error: str | None = None
    position: int | None = None
    eta: float | None = None
    if status == RQStatus.FINISHED.value and include_result:
        try:
            result = Transcript.model_validate(job.return_value())
        except ValidationError:
            log.exception("job %s finished with a result that is not a transcript", job.id)
            error = "the job finished but its result could not be read"
    elif status == RQStatus.FAILED.value:
        error = readable_error(job)
    elif status == RQStatus.QUEUED.value:
        position = queue_position(job)
    elif status == RQStatus.STARTED.value and isinstance(progress_meta, dict):
        eta = eta_s(progress_meta, time.time() if now is None else now)
    kwargs = job.kwargs if isinstance(job.kwargs, dict) else {}
    return JobStatus(
        job_id=job.id,
        status=status,
        engine=meta.get("engine") or kwargs.get("engine"),
        model=meta.get("model") or kwargs.get("model"),
        language=meta.get("detected_language") or meta.get("language"),
        created_at=job.created_at,
        started_at=job.started_at,
        ended_at=job.ended_at,
        progress=progress,
        queue_position=position,
        eta_s=eta,
        webhook=webhook_delivery(meta),
        result=result,
        error=error,
    )
