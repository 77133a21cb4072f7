"""The RQ worker: jobs run in its own process, where the warm models live, and none is lost.

rq's default worker forks per job (reloading the model; unsafe once CUDA is up). This one runs
jobs in-process and adds heartbeats, a watchdog for native code that overruns its timeout,
patience with a restarting Redis, and a warm shutdown; every job end takes `common.job_end`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import Any, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.registry import StartedJobRegistry, clean_registries
from rq.worker import WorkerStatus
from rq.worker_registration import clean_worker_registry

from common.cancellation import cancel_requested
from common.contract import StageProgress, meta_of, store_meta
from common.fairness import feed
from common.job_end import end_job
from worker import metrics
from worker.failures import is_out_of_memory, record_failure
from worker.maintenance import maintenance_lock, recover_abandoned
from worker.models import release_memory
from worker.routing import RoutedQueue
from worker.runtime import Runtime
from worker.stopping import JobStopped, clear_stop, request_stop
from worker.tasks import TranscriptionJob

log = logging.getLogger(__name__)

WATCHDOG_SLACK_S = 60.0

T = TypeVar("T")


class TranscriptionWorker(SimpleWorker):
    """SimpleWorker plus heartbeats, a watchdog and a bounded warm shutdown (see module doc)."""

    max_connection_wait_time = 5.0
    """Longest pause between reconnection attempts while Redis is down (rq's default is 60 s),
    so a worker is back at work within seconds of Redis."""

    def __init__(self, queues: list[Queue], *args: Any, runtime: Runtime, **kwargs: Any) -> None:
        """`queues` as `worker.routing.worker_queues` lists them (any Queue objects)."""
        settings = runtime.settings
        kwargs.setdefault("exception_handlers", [record_failure])
        kwargs.setdefault("job_class", TranscriptionJob)
        kwargs.setdefault("job_monitoring_interval", settings.heartbeat_interval_s)
        # A short registration TTL, so /health stops counting a killed worker within ~90 s.
        kwargs.setdefault("worker_ttl", max(settings.heartbeat_ttl_s, 20))
        routed = [
            RoutedQueue(queue.name, connection=queue.connection, serializer=queue.serializer)
            for queue in queues
        ]
        kwargs["queue_class"] = RoutedQueue
        super().__init__(routed, *args, **kwargs)
        self._runtime = runtime
        self._settings = settings
        self._running_job: Job | None = None
        self._running_queue: Queue | None = None
        self._grace_timer: threading.Timer | None = None
        self.shutdown_requested = False
        """Set by SIGTERM/SIGINT; when work() returns without it, the loop died of an error."""

    def get_heartbeat_ttl(self, job: Job) -> int:  # noqa: ARG002 - same TTL for every job
        """A short TTL, renewed by the heartbeat thread: a dead worker's job expires quickly."""
        return self._settings.heartbeat_ttl_s

    def reorder_queues(self, reference_queue: Queue) -> None:
        """Round robin: after a job from one queue, the next queue is tried first, so a worker
        of several engine/model pairs serves them in turns (rq's RoundRobinWorker)."""
        if reference_queue not in self._ordered_queues:
            return
        position = self._ordered_queues.index(reference_queue)
        self._ordered_queues = (
            self._ordered_queues[position + 1 :] + self._ordered_queues[: position + 1]
        )

    def prepare_job_execution(
        self,
        job: Job,
        remove_from_intermediate_queue: bool = False,  # noqa: ARG002 - always, see below
    ) -> None:
        """rq's bookkeeping at a job's start; the job always leaves its queue's intermediate
        list, where every dequeue here puts it (rq assumes so only for a one-queue worker)."""
        super().prepare_job_execution(job, remove_from_intermediate_queue=True)

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run the job in this process while a thread keeps its heartbeat and watches its time."""
        self._running_job, self._running_queue = job, queue
        if isinstance(job, TranscriptionJob):
            job.runtime = self._runtime
        with contextlib.suppress(RedisError):  # the next key's job takes the place on the queue
            feed(self.connection, queue.name)
        metrics.job_started(job)
        finished = threading.Event()
        helper = threading.Thread(
            target=self._watch, args=(job, finished), name="job-heartbeat", daemon=True
        )
        metrics.WORKER_BUSY.set(1)
        try:
            self.prepare_execution(job)
            helper.start()
            with self._runtime.cache.job():
                self.perform_job(job, queue)
        finally:
            metrics.WORKER_BUSY.set(0)
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
        if is_out_of_memory(exc_info[1]):
            log.error("job %s ran out of GPU memory; the worker goes on", job.id)
            release_memory(self._runtime.device)  # what the failed job held, for the next one
        if not isinstance(exc_info[1], JobStopped) and not self._cancel_requested(job):
            super().handle_exception(job, *exc_info)
            return
        log.info("job %s stopped: it was canceled", job.id)
        self._stopped_job_id = job.id
        job.retries_left = 0
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
        """rq's bookkeeping (waiting out a Redis restart), then the job-end path: the upload goes
        only once the result is stored."""
        self._outlast_redis_outage(
            lambda: super(TranscriptionWorker, self).handle_job_success(
                job, queue, started_job_registry
            ),
            f"record the result of job {job.id}",
        )
        # The return value rq has just stored (perform_job keeps it on the job).
        metrics.job_finished(job, getattr(job, "_result", None))
        end_job(job, self._settings)

    def handle_job_failure(
        self,
        job: Job,
        queue: Queue,
        started_job_registry: StartedJobRegistry | None = None,
        exc_string: str = "",
    ) -> None:
        """rq's bookkeeping (waiting out a Redis restart), then the job-end path unless the job
        was queued for another attempt."""
        self._outlast_redis_outage(
            lambda: super(TranscriptionWorker, self).handle_job_failure(
                job, queue, started_job_registry=started_job_registry, exc_string=exc_string
            ),
            f"record the failure of job {job.id}",
        )
        metrics.attempt_failed(job)
        end_job(job, self._settings)

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
            with maintenance_lock(queue) as lock:
                if lock is not None:
                    recover_abandoned(queue, self._settings)  # counted, before rq's cleanup
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
                meta = meta_of(job)
                meta.progress = StageProgress(stage="queued")
                store_meta(job, meta)
                queue._enqueue_job(job, pipeline=pipeline, at_front=True)
                pipeline.execute()
            self.register_death()  # type: ignore[no-untyped-call]
        except RedisError:
            log.exception("could not requeue job %s; it will be recovered as abandoned", job.id)
        os._exit(0)
