"""An RQ worker that runs jobs in its own process, where the models live, and never loses one.

rq's default worker forks per job, which would reload the model each time and is unsafe once
CUDA or CTranslate2 are initialised. This worker runs jobs in-process (rq's SimpleWorker) and
adds what forking gave for free, and what rq leaves to a slow cleanup:

- a heartbeat thread, so a job whose worker dies is seen as abandoned within HEARTBEAT_TTL_S;
- a maintenance thread that hands abandoned jobs to rq's retry logic every few seconds, puts
  back jobs a dying worker took off the queue but never started, and sweeps the uploads folder;
- patience with Redis: a finished job's result waits for a restarting Redis instead of being
  dropped, and the upload is deleted only once the result is stored;
- a watchdog that ends the process if a job overruns its timeout inside native code, where
  rq's SIGALRM cannot interrupt it (the job is then retried elsewhere or failed);
- a warm shutdown: on SIGTERM the current job gets SHUTDOWN_GRACE_S, then it is requeued.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, SimpleWorker
from rq.exceptions import AbandonedJobError
from rq.job import Job
from rq.registry import StartedJobRegistry, clean_registries
from rq.timeouts import JobTimeoutException
from rq.worker import WorkerStatus
from rq.worker_registration import clean_worker_registry

from common.cancellation import cancel_requested
from common.job_events import TERMINAL_STATUSES, announce_job_end
from common.job_status import load_job
from common.webhooks import schedule_delivery
from config import Settings
from worker.audio import AudioDecodeError
from worker.engines import UnknownEngineError
from worker.engines.base import ModelLoadError
from worker.stopping import JobStopped, clear_stop, request_stop
from worker.sweeper import sweep_uploads

log = logging.getLogger(__name__)

EXPLAINED_ERRORS: tuple[type[BaseException], ...] = (
    AudioDecodeError,
    JobStopped,
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

T = TypeVar("T")


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


def announce_if_ended(job: Job, queue: Queue) -> None:
    """Wake long-polling clients when `job`, as last stored, is in a terminal state."""
    status = job.get_status(refresh=False)
    if str(getattr(status, "value", status)) not in TERMINAL_STATUSES:
        return
    try:
        announce_job_end(queue.connection, queue.key, job.id)
    except RedisError as error:
        log.warning("could not announce the end of job %s: %s", job.id, error)


def schedule_webhook(job: Job, settings: Settings) -> None:
    """Schedule the job's webhook if it has ended and asked for one (at most once)."""
    try:
        schedule_delivery(job, settings)
    except RedisError as error:
        log.warning("could not schedule the webhook of job %s: %s", job.id, error)


class TranscriptionWorker(SimpleWorker):
    """SimpleWorker plus heartbeats, a watchdog and a bounded warm shutdown (see module doc)."""

    max_connection_wait_time = 5.0
    """Longest pause between reconnection attempts while Redis is down (rq's default is 60 s),
    so a worker is back at work within seconds of Redis."""

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
        self.shutdown_requested = False
        """Set by SIGTERM/SIGINT; when work() returns without it, the loop died of an error."""

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
            clear_stop(job.id)
        self.set_state(WorkerStatus.IDLE)

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:  # noqa: ARG002
        """Where rq's `stop-job` command lands (after setting `_stopped_job_id`): with no horse
        to kill, ask the running job to stop at its next progress report (worker.stopping)."""
        job = self._running_job
        if job is not None and self._stopped_job_id == job.id:
            log.info("stop requested for running job %s", job.id)
            request_stop(job.id)

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        """A job that stopped on request, or failed after a cancel, is rq's `stopped`, not a
        failure: no retry, no traceback in the log; other exceptions go to rq's handling."""
        if not isinstance(exc_info[1], JobStopped) and not self._cancel_requested(job):
            super().handle_exception(job, *exc_info)
            return
        log.info("job %s stopped: it was canceled", job.id)
        self._stopped_job_id = job.id
        job.retries_left = 0  # so the failure handler deletes the upload now
        for handler in self._exc_handlers:
            if handler(job, *exc_info) is False:
                break

    def _cancel_requested(self, job: Job) -> bool:
        try:
            return cancel_requested(self.connection, job)
        except RedisError:
            return False

    def handle_job_success(
        self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry
    ) -> None:
        """rq's bookkeeping (waiting out a Redis restart), the upload deleted once the result is
        stored, then the end signal."""
        self._outlast_redis_outage(
            lambda: super(TranscriptionWorker, self).handle_job_success(
                job, queue, started_job_registry
            ),
            f"record the result of job {job.id}",
        )
        delete_upload(job)
        announce_if_ended(job, queue)
        schedule_webhook(job, self._settings)

    def handle_job_failure(
        self,
        job: Job,
        queue: Queue,
        started_job_registry: StartedJobRegistry | None = None,
        exc_string: str = "",
    ) -> None:
        """rq's bookkeeping (waiting out a Redis restart), then the end signal unless the job was
        queued for another attempt."""
        self._outlast_redis_outage(
            lambda: super(TranscriptionWorker, self).handle_job_failure(
                job, queue, started_job_registry=started_job_registry, exc_string=exc_string
            ),
            f"record the failure of job {job.id}",
        )
        announce_if_ended(job, queue)
        schedule_webhook(job, self._settings)

    def _outlast_redis_outage(self, action: Callable[[], T], what: str) -> T:
        """Run `action`, retrying while Redis is unreachable for up to REDIS_OUTAGE_WAIT_S.

        The job's heartbeat thread keeps running meanwhile, so a short outage does not make the
        job look abandoned; past the wait the error propagates and the job is recovered as
        abandoned (and retried) like any other whose worker failed.
        """
        deadline = time.monotonic() + self._settings.redis_outage_wait_s
        delay_s = 0.25
        while True:
            try:
                return action()
            except (RedisConnectionError, RedisTimeoutError) as error:
                if time.monotonic() + delay_s > deadline:
                    raise
                log.warning("Redis unavailable (%s); retrying to %s", error, what)
                time.sleep(delay_s)
                delay_s = min(delay_s * 2, 2.0)

    def clean_registries(self) -> None:
        """rq's periodic registry cleanup, under the maintenance thread's lock, so that the two
        never hand the same abandoned job to the retry logic twice."""
        for queue in self.queues:
            with maintenance_lock(queue) as held:
                if held:
                    clean_registries(queue, self._exc_handlers)
                    clean_worker_registry(queue)
        self.last_cleaned_at = datetime.now(UTC)  # type: ignore[assignment]

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
        self.shutdown_requested = True
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
        self.shutdown_requested = True
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


@contextlib.contextmanager
def maintenance_lock(queue: Queue) -> Iterator[bool]:
    """Hold the queue's maintenance lock, if free; yields whether this process holds it."""
    key = f"{queue.key}:maintenance-lock"
    token = secrets.token_hex(8)
    if not queue.connection.set(key, token, nx=True, ex=MAINTENANCE_LOCK_TTL_S):
        yield False
        return
    try:
        yield True
    finally:
        with contextlib.suppress(RedisError):
            if queue.connection.get(key) == token.encode():
                queue.connection.delete(key)


def requeue_stranded(queue: Queue, grace_s: float, now: float | None = None) -> list[str]:
    """Put back on the queue jobs a worker took off it but never started (it died in between).

    rq moves a job to an intermediate list when a worker takes it, and into the started registry
    a moment later; a job seen in the list, outside the registry, for longer than `grace_s` was
    stranded there. It goes back to the front of the queue without spending a retry (it never
    ran); a job that has ended meanwhile is just dropped from the list. Returns the requeued ids.
    """
    moment = time.time() if now is None else now
    intermediate = queue.intermediate_queue
    started = set(queue.started_job_registry.get_job_ids(cleanup=False))
    requeued: list[str] = []
    for job_id in intermediate.get_job_ids():
        if job_id in started:
            continue
        first_seen = intermediate.get_first_seen(job_id)
        if first_seen is None:
            intermediate.set_first_seen(job_id)
            continue
        if moment - first_seen.timestamp() <= grace_s:
            continue
        job = load_job(queue, job_id)
        with queue.connection.pipeline() as pipeline:
            pipeline.lrem(intermediate.key, 1, job_id)
            pipeline.delete(intermediate.get_first_seen_key(job_id))
            if job is not None and job.get_status(refresh=False) == "queued":
                queue.push_job_id(job_id, pipeline=pipeline, at_front=True)
                requeued.append(job_id)
            pipeline.execute()
    if requeued:
        log.warning("requeued %d job(s) stranded by a dead worker: %s", len(requeued), requeued)
    return requeued


def run_maintenance(
    queue: Queue,
    now: float | None = None,
    stranded_grace_s: float = 30,
    settings: Settings | None = None,
) -> None:
    """One pass: abandoned jobs (heartbeats expired by `now`) go to rq's retry-or-fail logic, and
    stranded ones (see requeue_stranded) back to the queue.

    A Redis lock keeps workers from handling the same abandoned job twice. Jobs failed for good
    are announced to long-polling clients, and their webhooks scheduled when `settings` is given.
    """
    with maintenance_lock(queue) as held:
        if not held:
            return
        registry = queue.started_job_registry
        abandoned: list[str] = registry.get_expired_job_ids(now)
        registry.cleanup(timestamp=now, exception_handlers=[record_failure])
        for job_id in abandoned:
            job = load_job(queue, job_id)
            if job is not None:
                announce_if_ended(job, queue)
                if settings is not None:
                    schedule_webhook(job, settings)
        requeue_stranded(queue, stranded_grace_s, now)


def start_maintenance_thread(
    queue: Queue,
    settings: Settings,
    stop: threading.Event,
    task: Callable[[Queue], None] | None = None,
) -> threading.Thread:
    """Run maintenance (`task`, run_maintenance by default) every MAINTENANCE_INTERVAL_S, and
    the upload sweep every UPLOAD_SWEEP_INTERVAL_S, until `stop` is set, busy or not."""
    if task is None:
        task = functools.partial(
            run_maintenance, settings=settings, stranded_grace_s=settings.heartbeat_ttl_s
        )

    def loop() -> None:
        next_sweep = time.monotonic()
        while not stop.is_set():
            try:
                task(queue)
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + settings.upload_sweep_interval_s
                    sweep_uploads(queue, settings.upload_dir, settings.upload_orphan_age_s)
            except RedisError as error:
                log.warning("maintenance skipped: %s", error)
            except Exception:
                log.exception("maintenance pass failed")
            stop.wait(settings.maintenance_interval_s)

    thread = threading.Thread(target=loop, name="maintenance", daemon=True)
    thread.start()
    return thread
