"""A worker's housekeeping, under one lock per service: abandoned and stranded jobs on every
route's queue, jobs an older version queued unrouted, old uploads."""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator

from redis.exceptions import LockError, RedisError
from redis.lock import Lock
from rq import Queue
from rq.job import Job
from rq.utils import as_text, str_to_date
from rq.worker_registration import clean_worker_registry

from common.catalog import Route
from common.contract import (
    LIVE,
    Keys,
    home_queue_name,
    load_job,
    public_status_of,
    request_of,
    route_queue_name,
)
from common.fairness import feed
from common.job_end import end_job, keeps_upload_after_end
from common.redis_conn import replicas_hold
from common.routing import QUEUES_KEY, family_queue_names, service_queue_names
from common.storage import Listed, StorageUnavailable, storage_of
from config import Settings
from worker import metrics
from worker.failures import record_failure

log = logging.getLogger(__name__)

MAINTENANCE_LOCK_TTL_S = 10
"""How long the maintenance lock outlives a worker killed while holding it. A pass extends it
at every queue, so a pass of any length keeps it; a dead holder delays the next pass (and so
the recovery of the job it was running) by at most this long."""


@contextlib.contextmanager
def maintenance_lock(queue: Queue) -> Iterator[Lock | None]:
    """Hold the service's maintenance lock (one for QUEUE_NAME and its route queues), if free;
    yields the lock (extend it with `still_held` as the work goes on), or None when another
    process holds it."""
    lock = queue.connection.lock(
        Keys(queue.name).maintenance_lock, timeout=MAINTENANCE_LOCK_TTL_S, blocking=False
    )
    if not lock.acquire(blocking=False):
        yield None
        return
    try:
        yield lock
    finally:
        with contextlib.suppress(RedisError, LockError):
            lock.release()  # LockError: it expired, and maybe another process holds it now


def still_held(lock: Lock) -> bool:
    """Extend `lock` to a full MAINTENANCE_LOCK_TTL_S; False when it expired meanwhile (a stall
    longer than that), and another process may hold it: the pass must stop."""
    try:
        lock.reacquire()
    except LockError:
        log.warning("maintenance lock lost mid-pass (a stall over %d s); pass cut short",
                    MAINTENANCE_LOCK_TTL_S)  # fmt: skip
        return False
    return True


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


def recover_abandoned(queue: Queue, settings: Settings, now: float | None = None) -> list[Job]:
    """Jobs of `queue` whose heartbeats expired by `now` go to rq's retry-or-fail logic; a job
    failed for good takes the job-end path. Returns those jobs as they stand after it."""
    registry = queue.started_job_registry
    abandoned: list[str] = registry.get_expired_job_ids(now)
    registry.cleanup(timestamp=now, exception_handlers=[record_failure])
    recovered: list[Job] = []
    for job_id in abandoned:
        job = load_job(queue, job_id)
        if job is not None:
            metrics.attempt_failed(job)
            end_job(job, settings)
            recovered.append(job)
    return recovered


# KEYS: QUEUE_NAME's list, the route queue's list, the job's hash, rq's set of queues.
# ARGV: job id, the route queue's name. Moves a job queued unrouted, once.
_REROUTE = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], 'origin', ARGV[2])
redis.call('SADD', KEYS[4], KEYS[2])
return 1
"""

REROUTE_BATCH = 500
"""Most unrouted jobs moved per maintenance pass."""


def reroute_unrouted(queue: Queue) -> list[str]:
    """Move jobs waiting on QUEUE_NAME's own queue (queued by a version without routing, or
    by a key's turn in its old waiting lists) to their engine and model's queue, at its end;
    returns their ids. No worker takes jobs from QUEUE_NAME's own queue."""
    home = Queue(home_queue_name(queue.name), connection=queue.connection,
                 serializer=queue.serializer)  # fmt: skip
    moved: list[str] = []
    for _ in range(REROUTE_BATCH):
        feed(queue.connection, home.name)  # the old waiting lists, one job per key in turn
        job_ids = home.get_job_ids(0, 1)
        if not job_ids:
            break
        job = load_job(home, job_ids[0])
        request = request_of(job) if job is not None else None
        if job is None or request is None:
            queue.connection.lrem(home.key, 1, job_ids[0])  # rq's dequeue would skip it too
            continue
        target = route_queue_name(home.name, Route(request.engine, request.model))
        keys = [home.key, Keys(target).queue, job.key, QUEUES_KEY]
        if queue.connection.eval(_REROUTE, len(keys), *keys, job.id, target):
            moved.append(job.id)
    if moved:
        log.info("moved %d job(s) queued without a route to their model's queue", len(moved))
    return moved


def run_maintenance(
    queue: Queue, settings: Settings, now: float | None = None, stranded_grace_s: float = 30
) -> None:
    """One pass over QUEUE_NAME and every route queue that has had jobs: abandoned jobs
    (heartbeats expired by `now`, see recover_abandoned), stranded ones (see requeue_stranded)
    back to their queue, fair turns fed, workers that died unannounced forgotten (so /health
    and routing stop counting them), and unrouted jobs routed.

    A Redis lock keeps workers from handling the same abandoned job twice; it expires
    MAINTENANCE_LOCK_TTL_S after its holder dies.
    """
    with maintenance_lock(queue) as lock:
        if lock is None:
            return
        with_jobs = family_queue_names(queue.connection, queue.name)
        for name in with_jobs:
            if not still_held(lock):
                return
            each = Queue(name, connection=queue.connection, serializer=queue.serializer)
            recover_abandoned(each, settings, now)
            requeue_stranded(each, stranded_grace_s, now)
            feed(each.connection, each.name)  # a safety net: feeds happen at every move
        served = service_queue_names(queue.connection, queue.name, settings.catalogue().routes())
        for name in served:  # also the pairs that never had a job: their servability
            clean_worker_registry(Queue(name, connection=queue.connection))
        if still_held(lock):
            reroute_unrouted(queue)


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
                    sweep_uploads(queue, settings)
            except (RedisError, StorageUnavailable) as error:
                log.warning("maintenance skipped: %s", error)
            except Exception:
                log.exception("maintenance pass failed")
            stop.wait(settings.maintenance_interval_s)

    thread = threading.Thread(target=loop, name="maintenance", daemon=True)
    thread.start()
    return thread


def _job_status(queue: Queue, job_id: str) -> tuple[str | None, float | None]:
    """The job's rq status ("" while its hash is being written, None when there is none) and
    when it ended (a Unix time; None when rq recorded no end)."""
    raw, ended_raw = queue.connection.hmget(Job.key_for(job_id), ["status", "ended_at"])
    ended_at: float | None = None
    if ended_raw:
        with contextlib.suppress(ValueError):  # not rq's format
            ended_at = str_to_date(ended_raw).timestamp()
    if raw is None:
        return (None if not queue.connection.exists(Job.key_for(job_id)) else ""), ended_at
    return as_text(raw), ended_at


def sweep_uploads(queue: Queue, settings: Settings, now: float | None = None) -> list[str]:
    """Delete, in the uploads store (STORAGE_BACKEND), the uploads no live job needs; returns
    the locations (paths or keys) removed.

    - an upload named after a job that has ended (finished, failed, stopped, canceled): at once,
      once that end is on REDIS_MIN_REPLICAS replicas (else at a later pass); with
      REDIS_MIN_REPLICAS above 0, only once the job ended UPLOAD_KEEP_AFTER_END_S ago (by rq's
      `ended_at`, else the upload's own time), in case a failover rolls that end back;
    - named after a job that does not exist (expired, or never enqueued): once untouched for
      UPLOAD_ORPHAN_AGE_S (the API commits an upload a moment before it enqueues its job);
    - an upload still being received, or cut off mid-way (a `.incoming-*` file, an unfinished
      multipart upload, e.g. from a killed API): once untouched that long.

    An upload whose job is queued, started, scheduled or deferred is never touched, nor is
    anything else in the store.
    """
    moment = time.time() if now is None else now
    orphan_age_s = settings.upload_orphan_age_s
    keep_s = settings.upload_keep_after_end_s if keeps_upload_after_end(settings) else 0.0
    store = storage_of(settings).uploads
    orphans: list[Listed] = []
    ended: list[Listed] = []
    for listed in store.listing():
        idle_s = moment - listed.modified_at
        if listed.job_id is None:
            if idle_s > orphan_age_s:
                orphans.append(listed)
            continue
        status, ended_at = _job_status(queue, listed.job_id)
        if status is None:
            if idle_s > orphan_age_s:
                orphans.append(listed)
        else:
            public = public_status_of(status)
            since_end_s = moment - (listed.modified_at if ended_at is None else ended_at)
            if public is not None and public not in LIVE and since_end_s >= keep_s:
                ended.append(listed)
    if ended and not replicas_hold(queue.connection, settings, Keys(queue.name).replication_marker):
        ended = []  # a failover could still lose those ends, and rerun the jobs
    removed: list[str] = []
    for listed in orphans + ended:
        store.remove(listed)
        removed.append(listed.location)
    if removed:
        log.info("removed %d upload(s) no live job needs", len(removed))
    return removed
