"""An RQ worker that runs jobs in its own process, where the models live, and never loses one.

rq's default worker forks per job, which would reload the model each time and is unsafe once
CUDA or CTranslate2 are initialised. This worker runs jobs in-process (rq's SimpleWorker) and
adds what forking gave for free, and what rq leaves to a slow cleanup:

- a heartbeat thread, so a job whose worker dies is seen as abandoned within HEARTBEAT_TTL_S;
- a maintenance thread that hands abandoned jobs to rq's retry logic every few seconds;
- a watchdog that ends the process if a job overruns its timeout inside native code, where
  rq's SIGALRM cannot interrupt it (the job is then retried elsewhere or failed);
- a warm shutdown: on SIGTERM the current job gets SHUTDOWN_GRACE_S, then it is requeued.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.exceptions import AbandonedJobError
from rq.job import Job
from rq.timeouts import JobTimeoutException
from rq.worker import WorkerStatus

from config import Settings
from worker.audio import AudioDecodeError
from worker.engines import UnknownEngineError
from worker.engines.base import ModelLoadError

log = logging.getLogger(__name__)

EXPLAINED_ERRORS: tuple[type[BaseException], ...] = (
    AudioDecodeError,
    ModelLoadError,
    UnknownEngineError,
)
"""Failures whose message is written for the client as it stands."""

PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    *EXPLAINED_ERRORS,
    JobTimeoutException,
    TypeError,
    ValueError,
)
"""Failures that another attempt cannot fix: no retry is spent on them."""

WATCHDOG_SLACK_S = 60.0
MAINTENANCE_LOCK_TTL_S = 60


def readable_failure(exc_type: type[BaseException], exc_value: BaseException) -> str:
    """One line for the job's status: what went wrong, without a traceback."""
    if issubclass(exc_type, AbandonedJobError):
        return "the worker running this job stopped (crashed, killed or lost) before it finished"
    if issubclass(exc_type, JobTimeoutException):
        return f"the job ran past its time limit: {exc_value}"
    if issubclass(exc_type, EXPLAINED_ERRORS):
        return str(exc_value)
    return f"internal error: {exc_type.__name__}: {exc_value}"[:500]


def delete_upload(job: Job) -> None:
    """Remove a job's uploaded file, if it still exists."""
    path = (job.kwargs or {}).get("audio_path") if isinstance(job.kwargs, dict) else None
    if isinstance(path, str):
        with contextlib.suppress(FileNotFoundError):
            Path(path).unlink()


def record_failure(
    job: Job,
    exc_type: type[BaseException],
    exc_value: BaseException,
    _traceback: TracebackType | Any,
) -> bool:
    """rq exception handler: a readable error in the job's meta; no retry for permanent errors;
    the upload deleted once no attempt is left. Returns True so rq's own handling continues."""
    job.meta["error"] = readable_failure(exc_type, exc_value)
    if isinstance(exc_value, PERMANENT_ERRORS):
        job.retries_left = 0
    if not job.should_retry:
        delete_upload(job)
    with contextlib.suppress(RedisError):
        job.save_meta()
    return True


class TranscriptionWorker(SimpleWorker):
    """SimpleWorker plus heartbeats, a watchdog and a bounded warm shutdown (see module doc)."""

    def __init__(self, *args: Any, settings: Settings, **kwargs: Any) -> None:
        kwargs.setdefault("exception_handlers", [record_failure])
        kwargs.setdefault("job_monitoring_interval", settings.heartbeat_interval_s)
        # A short registration TTL, so /health stops counting a killed worker within ~90 s.
        kwargs.setdefault("worker_ttl", max(settings.heartbeat_ttl_s, 20))
        super().__init__(*args, **kwargs)
        self._settings = settings
        self._running_job: Job | None = None
        self._running_queue: Queue | None = None
        self._grace_timer: threading.Timer | None = None

    def get_heartbeat_ttl(self, job: Job) -> int:  # noqa: ARG002 - same TTL for every job
        """A short TTL, renewed by the heartbeat thread: a dead worker's job expires quickly."""
        return self._settings.heartbeat_ttl_s

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run the job in this process while a thread keeps its heartbeat and watches its time."""
        self._running_job, self._running_queue = job, queue
        finished = threading.Event()
        helper = threading.Thread(
            target=self._watch, args=(job, finished), name="job-heartbeat", daemon=True
        )
        try:
            self.prepare_execution(job)
            helper.start()
            self.perform_job(job, queue)
        finally:
            finished.set()
            if helper.is_alive():
                helper.join()
            self._running_job = self._running_queue = None
        self.set_state(WorkerStatus.IDLE)

    def _watch(self, job: Job, finished: threading.Event) -> None:
        deadline = time.monotonic() + (job.timeout or 0) + WATCHDOG_SLACK_S
        while not finished.wait(self._settings.heartbeat_interval_s):
            try:
                self.maintain_heartbeats(job)
            except (RedisError, AttributeError) as error:
                log.warning("heartbeat for job %s failed: %s", job.id, error)
            if job.timeout and job.timeout > 0 and time.monotonic() > deadline:
                log.critical(
                    "job %s overran its %s s timeout inside native code; exiting so it can be "
                    "retried or failed by another worker",
                    job.id,
                    job.timeout,
                )
                os._exit(75)

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        """Warm shutdown: finish the current job within the grace period, else requeue it."""
        job = self._running_job
        if job is not None and self._grace_timer is None:
            grace = self._settings.shutdown_grace_s
            log.info("shutdown requested: job %s has %.0f s to finish", job.id, grace)
            self._grace_timer = threading.Timer(grace, self._requeue_and_exit, args=(job,))
            self._grace_timer.daemon = True
            self._grace_timer.start()
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]

    def request_force_stop(self, signum: int, frame: FrameType | None) -> None:
        """A second signal: requeue the running job at once rather than lose it."""
        job = self._running_job
        if job is not None:
            self._requeue_and_exit(job)
        super().request_force_stop(signum, frame)

    def _requeue_and_exit(self, job: Job) -> None:
        queue = self._running_queue
        if queue is None or self._running_job is not job:
            return
        log.warning("job %s did not finish within the shutdown grace period: requeueing", job.id)
        try:
            with self.connection.pipeline() as pipeline:
                queue.started_job_registry.remove_executions(job, pipeline=pipeline)
                job.meta["progress"] = {"stage": "queued", "percent": None}
                job.save_meta()
                queue._enqueue_job(job, pipeline=pipeline, at_front=True)
                pipeline.execute()
            self.register_death()  # type: ignore[no-untyped-call]
        except RedisError:
            log.exception("could not requeue job %s; it will be recovered as abandoned", job.id)
        os._exit(0)


def run_maintenance(queue: Queue, now: float | None = None) -> None:
    """One pass: abandoned jobs (heartbeats expired by `now`) go to rq's retry-or-fail logic.

    A Redis lock keeps workers from handling the same abandoned job twice.
    """
    key = f"{queue.key}:maintenance-lock"
    token = secrets.token_hex(8)
    if not queue.connection.set(key, token, nx=True, ex=MAINTENANCE_LOCK_TTL_S):
        return
    try:
        queue.started_job_registry.cleanup(timestamp=now, exception_handlers=[record_failure])
    finally:
        with contextlib.suppress(RedisError):
            if queue.connection.get(key) == token.encode():
                queue.connection.delete(key)


def start_maintenance_thread(
    queue: Queue,
    settings: Settings,
    stop: threading.Event,
    task: Callable[[Queue], None] = run_maintenance,
) -> threading.Thread:
    """Run maintenance every MAINTENANCE_INTERVAL_S until `stop` is set, busy or not."""

    def loop() -> None:
        while not stop.is_set():
            try:
                task(queue)
            except RedisError as error:
                log.warning("maintenance skipped: %s", error)
            except Exception:
                log.exception("maintenance pass failed")
            stop.wait(settings.maintenance_interval_s)

    thread = threading.Thread(target=loop, name="maintenance", daemon=True)
    thread.start()
    return thread
