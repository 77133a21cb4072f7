"""Job-end signals for long-polling clients: a per-job Redis list, pushed once the job has ended.

Whoever moves a job to a terminal state (the worker on success or failure, maintenance on an
abandoned job, a cancel) calls `announce_job_end` *after* the state is stored in Redis. A waiter
first reads the job's state, and only if it has not ended blocks on the list: the signal outlives
the push by ENDED_SIGNAL_TTL_S, so an end between the read and the block is never missed. The
list works across API processes and needs no pub/sub listener thread.
"""

from __future__ import annotations

from redis import Redis

TERMINAL_STATUSES: frozenset[str] = frozenset({"finished", "failed", "canceled", "stopped"})
"""RQ job states a job never leaves by itself."""

ENDED_SIGNAL_TTL_S = 600
"""How long the signal stays after a job ends; waiters that look later see the state instead."""


def ended_key(queue_key: str, job_id: str) -> str:
    """The Redis list that holds the end signal of one job of a queue (`rq:queue:<name>`)."""
    return f"{queue_key}:ended:{job_id}"


def announce_job_end(connection: Redis, queue_key: str, job_id: str) -> None:
    """Wake every client long-polling this job. Call only once the terminal state is stored."""
    key = ended_key(queue_key, job_id)
    with connection.pipeline(transaction=True) as pipeline:
        pipeline.rpush(key, b"ended")
        pipeline.ltrim(key, -1, -1)
        pipeline.expire(key, ENDED_SIGNAL_TTL_S)
        pipeline.execute()
