"""Cancel requests that outlive a lost message: a Redis key per job, checked by the worker."""

# The API stops a running job with rq's `stop-job` command, which reaches the worker over pub/sub
# and only if that worker is already running the job. The key covers the rest: a job taken by a
# worker just as it was canceled, a message missed during a reconnect, a job retried after its
# worker died. The worker checks it at every progress report and stops the job when it is set.

from __future__ import annotations

import time

from redis import Redis
from rq.job import Job

from common.contract import Keys


def request_cancel(connection: Redis, job: Job, ttl_s: int) -> None:
    """Record that `job` must not run, or must stop; kept for `ttl_s` seconds."""
    connection.set(Keys(job.origin).cancel(job.id), str(time.time()), ex=ttl_s)


def cancel_requested(connection: Redis, job: Job) -> bool:
    """Whether a cancel has been requested for `job`."""
    return bool(connection.exists(Keys(job.origin).cancel(job.id)))
