"""The webhook schedule: a Redis sorted set of ended jobs whose callback is due, by due time."""

# `common.job_end` schedules a job's webhook once; each worker's delivery thread
# (`worker.webhooks`) claims due entries with a lease, so a dead deliverer's entry comes due again
# and no attempt is made twice. Not an RQ job per delivery: it would wait behind the next
# transcription on the in-process worker.

from __future__ import annotations

import time
from typing import cast

from redis import Redis
from redis.exceptions import WatchError
from rq.job import Job

from common.contract import TERMINAL, Keys, meta_of, public_status
from config import Settings

MAX_RETRY_DELAY_S = 3600


def retry_delay_s(settings: Settings, attempt: int) -> int:
    """Seconds to wait after failed attempt number `attempt` (1-based): base, 4x, 16x, ..."""
    return int(min(settings.webhook_retry_base_s * 4 ** max(attempt - 1, 0), MAX_RETRY_DELAY_S))


def schedule_delivery(job: Job, settings: Settings, now: float | None = None) -> bool:
    """Make the webhook of `job` due now if it has a callback_url and has ended.

    Returns True when this call scheduled it; later calls for the same job do nothing.
    """
    if not meta_of(job).callback_url:
        return False
    job.get_status(refresh=True)
    if public_status(job) not in TERMINAL:
        return False
    keys = Keys(job.origin)
    keep_s = max(settings.result_ttl_s, settings.failure_ttl_s)
    if not job.connection.set(keys.webhook_scheduled(job.id), "1", nx=True, ex=keep_s):
        return False
    job.connection.zadd(keys.webhooks_due, {job.id: time.time() if now is None else now})
    return True


def claim_due(
    connection: Redis, queue_name: str, lease_s: float, now: float | None = None
) -> str | None:
    """Take the most overdue job id, pushing its due time `lease_s` ahead; None if none is due."""
    key = Keys(queue_name).webhooks_due
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
    connection.zadd(Keys(queue_name).webhooks_due, {job_id: time.time() + delay_s})


def finish(connection: Redis, queue_name: str, job_id: str) -> None:
    """Drop a claimed entry: delivered, or given up."""
    connection.zrem(Keys(queue_name).webhooks_due, job_id)
