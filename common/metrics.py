"""The job counters both tiers add to (Prometheus): jobs submitted, ended and retried.

A job's end is counted once, by the process that ends it: a worker (finished, failed, stopped
while running), maintenance in a worker (abandoned, failed for good) or the API (canceled while
queued). Prometheus sums them over every target. Labels are the job's engine and model, never
its id or its API key.
"""

from __future__ import annotations

from prometheus_client import Counter
from rq.job import Job

from common.contract import request_of, route_of_queue

JOBS_SUBMITTED = Counter(
    "transcribe_jobs_submitted_total",
    "Jobs queued by the API (a replayed Idempotency-Key makes none).",
    ["engine", "model"],
)
JOBS_ENDED = Counter(
    "transcribe_jobs_ended_total",
    "Jobs that ended, by how: finished, failed or canceled.",
    ["engine", "model", "status"],
)
JOBS_RETRIED = Counter(
    "transcribe_jobs_retried_total",
    "Attempts that failed (or whose worker died) and were queued again for another.",
    ["engine", "model"],
)

UNKNOWN = "unknown"


def job_labels(job: Job) -> tuple[str, str]:
    """(engine, model) of a job, from its request, else from its queue's name."""
    request = request_of(job)
    if request is not None:
        return request.engine.value, request.model
    route = route_of_queue(job.origin)
    if route is not None:
        return route.engine.value, route.model
    return UNKNOWN, UNKNOWN


def count_end(job: Job, status: str) -> None:
    """Count one end of `job` (`finished`, `failed` or `canceled`)."""
    JOBS_ENDED.labels(*job_labels(job), status).inc()
