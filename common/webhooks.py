"""The webhook schedule: a Redis sorted set of ended jobs whose callback is due, by due time.

Whoever ends a job (the worker, its maintenance pass, or the API cancelling a queued job) calls
`schedule_delivery`; a marker key makes that happen once per job. Each worker process runs a
delivery thread (`worker.webhooks`) that claims due entries with a lease (`claim_due`), so an
entry whose deliverer died becomes due again when the lease runs out, and two workers never
deliver the same attempt. After an attempt the entry is either removed (`finish`) or pushed
back by the retry delay (`postpone`).

Why not an RQ job per delivery: the worker runs jobs one at a time in-process, so a delivery
would wait behind the next hour-long transcription; and an RQ worker that serves two queues pops
with BLPOP, losing the intermediate-queue bookkeeping that recovers jobs from a dying worker.
"""

from __future__ import annotations

import time
from typing import cast

from redis import Redis
from redis.exceptions import WatchError
from rq import Queue
from rq.job import Job

from common.job_status import PUBLIC_STATUS
from config import Settings

ENDED_STATES: frozenset[str] = frozenset({"finished", "failed", "canceled"})
MAX_RETRY_DELAY_S = 3600


def due_key(queue_name: str) -> str:
    """The sorted set of job ids of a queue whose webhook is due, scored by due time."""
    return f"{Queue.redis_queue_namespace_prefix}{queue_name}:webhooks"


def retry_delay_s(settings: Settings, attempt: int) -> int:
    """Seconds to wait after failed attempt number `attempt` (1-based): base, 4x, 16x, ..."""
    return int(min(settings.webhook_retry_base_s * 4 ** max(attempt - 1, 0), MAX_RETRY_DELAY_S))


def schedule_delivery(job: Job, settings: Settings, now: float | None = None) -> bool:
    """Make the webhook of `job` due now if it has a callback_url and has ended.

    Returns True when this call scheduled it; later calls for the same job do nothing.
    """
    if not job.meta.get("callback_url"):
        return False
    status = job.get_status(refresh=True)
    name = str(getattr(status, "value", status))
    if PUBLIC_STATUS.get(name, name) not in ENDED_STATES:
        return False
    keep_s = max(settings.result_ttl_s, settings.failure_ttl_s)
    marker = f"{due_key(job.origin)}:scheduled:{job.id}"
    if not job.connection.set(marker, "1", nx=True, ex=keep_s):
        return False
    job.connection.zadd(due_key(job.origin), {job.id: time.time() if now is None else now})
    return True


def claim_due(
    connection: Redis, queue_name: str, lease_s: float, now: float | None = None
) -> str | None:
    """Take the most overdue job id, pushing its due time `lease_s` ahead; None if none is due."""
    key = due_key(queue_name)
    moment = time.time() if now is None else now
    with connection.pipeline() as pipeline:
        while True:
            try:
                pipeline.watch(key)  # type: ignore[no-untyped-call]
                due = cast("list[bytes]", pipeline.zrangebyscore(key, "-inf", moment, 0, 1))
                if not due:
                    pipeline.unwatch()
                    return None
                pipeline.multi()
                pipeline.zadd(key, {due[0]: moment + lease_s})
                pipeline.execute()
                return due[0].decode()
            except WatchError:
                continue


def postpone(connection: Redis, queue_name: str, job_id: str, delay_s: float) -> None:
    """Make a claimed entry due again in `delay_s` seconds."""
    connection.zadd(due_key(queue_name), {job_id: time.time() + delay_s})


def finish(connection: Redis, queue_name: str, job_id: str) -> None:
    """Drop a claimed entry: delivered, or given up."""
    connection.zrem(due_key(queue_name), job_id)
