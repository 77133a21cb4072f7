"""Job-end signals for long-polling clients: a per-job Redis list, pushed once the job has ended."""

# `common.job_end` pushes it *after* the terminal state is stored. A waiter first reads the job's
# state, and only if it has not ended blocks on the list: the signal outlives the push by
# ENDED_SIGNAL_TTL_S, so an end between the read and the block is never missed. The list works
# across API processes and needs no pub/sub listener thread.

from __future__ import annotations

from redis import Redis

ENDED_SIGNAL_TTL_S = 600
"""How long the signal stays after a job ends; waiters that look later see the state instead."""


def announce_job_end(connection: Redis, ended_key: str) -> None:
    """Wake every client long-polling the job whose end list is `ended_key` (Keys.ended)."""
    with connection.pipeline(transaction=True) as pipeline:
        pipeline.rpush(ended_key, b"ended")
        pipeline.ltrim(ended_key, -1, -1)
        pipeline.expire(ended_key, ENDED_SIGNAL_TTL_S)
        pipeline.execute()
