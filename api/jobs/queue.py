"""Puts a job request on the queue (and in the job index), and finds jobs by id."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rq import Queue, Retry
from rq.job import Job

from api.jobs.index import index_job
from api.keys.quotas import Limits
from common.catalog import Route
from common.contract import (
    TASK,
    JobMeta,
    JobRequest,
    Keys,
    StageProgress,
    load_job,
    meta_of,
    store_meta,
)
from common.fairness import feed, hold
from common.metrics import JOBS_SUBMITTED
from common.routing import route_queue
from config import Settings


@dataclass(frozen=True)
class Caller:
    """Who is asking, by API key: its name, whether it may see every job, its quotas."""

    name: str
    admin: bool = False
    limits: Limits = field(default_factory=Limits)


JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


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
    request: JobRequest,
    duration_s: float | None,
    callback_url: str | None = None,
    owner: str | None = None,
) -> Job:
    """Put one transcription on its engine and model's queue (beside `queue`, QUEUE_NAME's) and
    in the job index; only the file's path crosses Redis. `callback_url` gets the webhook;
    `owner` is the submitting API key's name, and with one the job waits its key's turn before
    it reaches the RQ queue."""
    queue = route_queue(queue, Route(request.engine, request.model))
    job = queue.create_job(
        TASK,
        kwargs=request.model_dump(mode="json", exclude_none=True),
        job_id=job_id,
        timeout=job_timeout_s(settings, duration_s, request.engine),
        result_ttl=settings.result_ttl_s,
        failure_ttl=settings.failure_ttl_s,
        ttl=None,
        retry=Retry(max=settings.job_retries) if settings.job_retries else None,
        description=f"transcribe engine={request.engine} model={request.model}",
    )
    meta = JobMeta(progress=StageProgress(stage="queued"), callback_url=callback_url, owner=owner)
    store_meta(job, meta, save=False)
    with queue.connection.pipeline() as pipeline:
        queue.enqueue_job(job, pipeline=pipeline)
        if owner is not None:  # it waits its key's turn (common.fairness)
            hold(pipeline, Keys(queue.name), owner, job.id)
        index_job(pipeline, job, settings, owner)
        pipeline.execute()
    if owner is not None:
        feed(queue.connection, queue.name)
    JOBS_SUBMITTED.labels(request.engine.value, request.model).inc()
    return job


def find_job(queue: Queue, job_id: str, caller: Caller | None = None) -> Job | None:
    """The job with this id, or None when the id is malformed, unknown, expired, or another
    API key's (so ids cannot be probed); `caller` None sees every job (keys are off)."""
    if not JOB_ID_PATTERN.match(job_id):
        return None
    job = load_job(queue, job_id)
    if job is None or caller is None or caller.admin or meta_of(job).owner == caller.name:
        return job
    return None
