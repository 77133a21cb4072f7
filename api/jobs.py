"""Turns accepted uploads into RQ jobs, and RQ jobs into the API's status model."""

from __future__ import annotations

import logging
import re
from typing import Any

from pydantic import ValidationError
from rq import Queue, Retry
from rq.job import Job
from rq.job import JobStatus as RQStatus

from api.schemas import JobStatus, Progress
from common.transcript import Transcript
from config import Settings

TASK = "worker.tasks.transcribe"
"""The worker's job function, named so the API never imports worker code."""

JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

log = logging.getLogger(__name__)


def job_timeout_s(settings: Settings, duration_s: float | None) -> int:
    """Time a job may run: the floor plus a per-audio-second allowance, capped by the ceiling.

    Unknown durations are charged as the longest audio the server accepts.
    """
    seconds = settings.max_audio_duration_s if duration_s is None else duration_s
    allowed = settings.job_timeout_min_s + seconds * settings.job_timeout_per_audio_s
    return int(min(max(allowed, settings.job_timeout_min_s), settings.job_timeout_max_s))


def enqueue_transcription(
    queue: Queue,
    settings: Settings,
    *,
    job_id: str,
    audio_path: str,
    engine: str,
    model: str,
    language: str | None,
    duration_s: float | None,
) -> Job:
    """Put one transcription on the queue; only the file's path crosses Redis."""
    return queue.enqueue(
        TASK,
        kwargs={
            "audio_path": audio_path,
            "engine": engine,
            "model": model,
            "language": language,
        },
        job_id=job_id,
        job_timeout=job_timeout_s(settings, duration_s),
        result_ttl=settings.result_ttl_s,
        failure_ttl=settings.failure_ttl_s,
        ttl=None,
        retry=Retry(max=settings.job_retries) if settings.job_retries else None,
        description=f"transcribe engine={engine} model={model}",
        meta={
            "engine": engine,
            "model": model,
            "language": language,
            "audio_duration_s": duration_s,
            "progress": {"stage": "queued", "percent": None},
        },
    )


def fetch_job(queue: Queue, job_id: str) -> Job | None:
    """The job with this id, or None when the id is malformed, unknown or expired."""
    if not JOB_ID_PATTERN.match(job_id):
        return None
    return queue.fetch_job(job_id)


def readable_error(job: Job) -> str | None:
    """Why a job failed, in one line: the worker's own message, else the exception line."""
    message = job.meta.get("error")
    if isinstance(message, str) and message:
        return message
    result = job.latest_result()
    exc_string = getattr(result, "exc_string", None) or job.exc_info
    if not exc_string:
        return None
    lines = [line for line in str(exc_string).strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else None


def describe_job(job: Job) -> JobStatus:
    """Map an RQ job to the API's status model."""
    status = job.get_status(refresh=False)
    meta: dict[str, Any] = job.meta
    progress_meta = meta.get("progress")
    progress = Progress.model_validate(progress_meta) if isinstance(progress_meta, dict) else None
    result: Transcript | None = None
    error: str | None = None
    if status == RQStatus.FINISHED:
        try:
            result = Transcript.model_validate(job.return_value())
        except ValidationError:
            log.exception("job %s finished with a result that is not a transcript", job.id)
            error = "the job finished but its result could not be read"
    elif status in (RQStatus.FAILED, RQStatus.STOPPED):
        error = readable_error(job)
    kwargs = job.kwargs if isinstance(job.kwargs, dict) else {}
    return JobStatus(
        job_id=job.id,
        status=str(status.value if isinstance(status, RQStatus) else status),
        engine=meta.get("engine") or kwargs.get("engine"),
        model=meta.get("model") or kwargs.get("model"),
        language=meta.get("detected_language") or meta.get("language"),
        created_at=job.created_at,
        started_at=job.started_at,
        ended_at=job.ended_at,
        progress=progress,
        result=result,
        error=error,
    )
