"""Long-polling of job status: wait, without holding a thread, until a job ends or time is up."""

from __future__ import annotations

from redis.asyncio import Redis as AsyncRedis
from rq import Queue
from starlette.concurrency import run_in_threadpool

from api.jobs.queue import Caller, find_job
from common.contract import TERMINAL, Keys
from common.job_status import JobStatus, describe_job

MAX_WAIT_S = 60.0
"""Longest a status request may wait for its job to end, seconds."""


class JobEndWaiter:
    """Waits on the end signals the workers push (see `common.job_events`)."""

    def __init__(self, connection: AsyncRedis, queue_name: str) -> None:
        self._connection = connection
        self._keys = Keys(queue_name)

    async def wait(self, job_id: str, timeout_s: float) -> bool:
        """True as soon as the job's end is announced; False after `timeout_s` seconds."""
        if timeout_s <= 0:
            return False
        key = self._keys.ended(job_id)
        # Popping and pushing back onto the same list leaves the signal for every other waiter
        # (BLPOP would hand it to one). BLMOVE is the newer spelling; fakeredis does not block on
        # it, BRPOPLPUSH it does.
        signal = await self._connection.brpoplpush(key, key, timeout=timeout_s)
        return signal is not None


def read_status(queue: Queue, job_id: str, caller: Caller | None = None) -> JobStatus | None:
    """The job's status as the API shows it, or None for a job `caller` cannot see."""
    job = find_job(queue, job_id, caller)
    return None if job is None else describe_job(job)


async def status_after_wait(
    queue: Queue, waiter: JobEndWaiter, job_id: str, wait_s: float, caller: Caller | None = None
) -> JobStatus | None:
    """The job's status once it has ended or `wait_s` seconds have passed, whichever is first.

    The state is read before waiting and the end signal outlives the job's end, so a job that
    ends in between is not missed.
    """
    status = await run_in_threadpool(read_status, queue, job_id, caller)
    if status is None or wait_s <= 0 or status.status in TERMINAL:
        return status
    await waiter.wait(job_id, wait_s)
    return await run_in_threadpool(read_status, queue, job_id, caller)
