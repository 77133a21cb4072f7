"""Stopping a job that runs in the worker's own process, at its next progress report."""

# rq stops a job by killing the forked work horse; this worker runs jobs in-process, where rq's
# `stop-job` command would only mark the job. So the worker turns that command into a flag here
# (`request_stop`), and the job checks it, plus the Redis cancel key as a fallback, every time it
# reports progress: `StopCheck` raises JobStopped, which the worker records as rq's `stopped`
# (shown to clients as `canceled`). Native code (a CTranslate2 or torch call) is never interrupted:
# a stop takes effect between whisperx batches or whisper-timestamped's 30 s windows.

from __future__ import annotations

import threading
import time

from redis.exceptions import RedisError
from rq.job import Job

from common.cancellation import cancel_requested

REDIS_CHECK_INTERVAL_S = 1.0
"""How often a running job looks at its Redis cancel key, at most."""

_requested: set[str] = set()
_lock = threading.Lock()


class JobStopped(Exception):
    """The job was canceled while it ran."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} was canceled while it ran")
        self.job_id = job_id


def request_stop(job_id: str) -> None:
    """Ask the job `job_id`, if it runs in this process, to stop at its next progress report."""
    with _lock:
        _requested.add(job_id)


def clear_stop(job_id: str) -> None:
    """Forget a stop request once the job is over."""
    with _lock:
        _requested.discard(job_id)


def stop_requested(job_id: str) -> bool:
    """Whether this process was asked to stop `job_id`."""
    with _lock:
        return job_id in _requested


class StopCheck:
    """Raises JobStopped when the job has been asked to stop (in-process flag or Redis key)."""

    def __init__(self, job: Job | None, interval_s: float = REDIS_CHECK_INTERVAL_S) -> None:
        self._job = job
        self._interval_s = interval_s
        self._last_redis_check = float("-inf")

    def __call__(self) -> None:
        """Return if the job may go on; raise JobStopped if not."""
        job = self._job
        if job is None:
            return
        if stop_requested(job.id):
            raise JobStopped(job.id)
        now = time.monotonic()
        if now - self._last_redis_check < self._interval_s:
            return
        self._last_redis_check = now
        try:
            requested = cancel_requested(job.connection, job)
        except RedisError:
            return  # the flag from the stop command still works; Redis is checked next time
        if requested:
            raise JobStopped(job.id)
