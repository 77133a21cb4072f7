"""Turns accepted uploads into RQ jobs, and RQ jobs into the API's status model."""

from __future__ import annotations

import logging
import re
from typing import Any

from rq import Queue, Retry
from rq.job import Job

from api.job_index import index_job
from common.job_status import describe_job as describe_job
from common.job_status import load_job
from common.job_status import readable_error as readable_error
from config import Settings

TASK = "worker.tasks.transcribe"
"""The worker's job function, named so the API never imports worker code."""

JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

log = logging.getLogger(__name__)


def job_timeout_s(settings: Settings, duration_s: float | None, engine: str | None = None) -> int:
    """Time a job may run: the floor plus a per-audio-second allowance scaled by the engine's
    expected speed, capped by the ceiling; never unlimited.

    Unknown durations are charged as the longest audio the server accepts.
    """
    seconds = settings.max_audio_duration_s if duration_s is None else duration_s
    factor = settings.job_timeout_engine_factors.get(engine or "", 1.0)
    allowed = settings.job_timeout_min_s + seconds * settings.job_timeout_per_audio_s * factor
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
    options: dict[str, Any] | None = None,
    callback_url: str | None = None,
) -> Job:
    """Put one transcription on the queue and in the job index; only the file's path crosses
    Redis. `options` become the worker's TranscribeOptions; `callback_url` gets the webhook."""
    meta: dict[str, Any] = {
        "engine": engine,
        "model": model,
        "language": language,
        "audio_duration_s": duration_s,
        "progress": {"stage": "queued", "percent": None},
    }
    if callback_url:
        meta["callback_url"] = callback_url
    job = queue.enqueue(
        TASK,
        kwargs={
            "audio_path": audio_path,
            "engine": engine,
            "model": model,
            "language": language,
            "options": options or {},
        },
        job_id=job_id,
        job_timeout=job_timeout_s(settings, duration_s, engine),
        result_ttl=settings.result_ttl_s,
        failure_ttl=settings.failure_ttl_s,
        ttl=None,
        retry=Retry(max=settings.job_retries) if settings.job_retries else None,
        description=f"transcribe engine={engine} model={model}",
        meta=meta,
    )
    index_job(queue, job, settings)
    return job


def fetch_job(queue: Queue, job_id: str) -> Job | None:
    """The job with this id, or None when the id is malformed, unknown or expired."""
    if not JOB_ID_PATTERN.match(job_id):
        return None
    return load_job(queue, job_id)
