"""The worker's housekeeping on fakeredis: the uploads sweeper, stranded jobs, Redis outages."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import fakeredis
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import Queue, Worker
from rq.job import JobStatus
from rq.utils import utcformat

from common.contract import Keys, load_job
from common.job_end import end_job
from config import Settings
from tests.fakes import enqueue_path, fake_runtime, jobs_queue
from worker import maintenance
from worker.main import forget
from worker.maintenance import (
    MAINTENANCE_LOCK_TTL_S,
    maintenance_lock,
    requeue_stranded,
    run_maintenance,
    sweep_uploads,
)
from worker.rq_worker import TranscriptionWorker

HOUR_S = 3600.0


def enqueue(queue: Queue, settings: Settings, audio: Path | None = None) -> str:
    job_id = str(uuid.uuid4())
    enqueue_path(queue, settings, audio or settings.upload_dir / f"{job_id}.wav", job_id)
    return job_id


def upload_file(settings: Settings, name: str, age_s: float = 0.0) -> Path:
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    path = settings.upload_dir / name
    path.write_bytes(b"audio")
    moment = time.time() - age_s
    os.utime(path, (moment, moment))
    return path


def test_sweeper_removes_what_no_live_job_needs(queue: Queue, settings: Settings) -> None:
    kept: list[Path] = []
    removed: list[Path] = []
    for status, expected in [
        (JobStatus.QUEUED, kept),
        (JobStatus.STARTED, kept),
        (JobStatus.DEFERRED, kept),
        (JobStatus.SCHEDULED, kept),
        (JobStatus.FINISHED, removed),
        (JobStatus.FAILED, removed),
        (JobStatus.STOPPED, removed),
        (JobStatus.CANCELED, removed),
    ]:
        job_id = enqueue(queue, settings)
        load_job(queue, job_id).set_status(status)  # type: ignore[union-attr]
        expected.append(upload_file(settings, f"{job_id}.wav", age_s=5 * HOUR_S))
    kept.append(upload_file(settings, f"{uuid.uuid4()}.mp3", age_s=0.5 * HOUR_S))
    removed.append(upload_file(settings, f"{uuid.uuid4()}.mp3", age_s=2 * HOUR_S))
    kept.append(upload_file(settings, ".incoming-young", age_s=0.5 * HOUR_S))
    removed.append(upload_file(settings, ".incoming-stale", age_s=2 * HOUR_S))
    kept.append(upload_file(settings, "notes-of-an-operator.txt", age_s=50 * HOUR_S))
    (settings.upload_dir / f"{uuid.uuid4()}.d").mkdir()

    settings.upload_orphan_age_s = HOUR_S
    swept = sweep_uploads(queue, settings)

    assert sorted(swept) == sorted(str(path) for path in removed)
    assert all(path.exists() for path in kept)
    assert not any(path.exists() for path in removed)


def test_behind_sentinel_an_ended_jobs_upload_outlasts_a_failover_that_rolls_its_end_back(
    queue: Queue, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With REDIS_MIN_REPLICAS, a job's end does not delete its upload: the sweep does, once
    the job ended UPLOAD_KEEP_AFTER_END_S ago. If a failover meanwhile rolls the job back to
    started (its end was on a master that had been deposed), the rerun still has its audio."""
    settings.redis_min_replicas = 1
    settings.upload_keep_after_end_s = 60.0
    monkeypatch.setattr(maintenance, "replicas_hold", lambda *_: True)
    job_id = enqueue(queue, settings)
    upload = upload_file(settings, f"{job_id}.wav")
    job = load_job(queue, job_id)
    assert job is not None
    job.set_status(JobStatus.FINISHED)
    ended = time.time()
    job.connection.hset(job.key, "ended_at", utcformat(datetime.fromtimestamp(ended, UTC)))

    end_job(job, settings)
    assert upload.exists()  # not at the end
    assert sweep_uploads(queue, settings, now=ended + 59) == []
    job.set_status(JobStatus.STARTED)  # the failover rolled the end back: it runs again
    assert sweep_uploads(queue, settings, now=ended + 61) == []
    job.set_status(JobStatus.FINISHED)
    assert sweep_uploads(queue, settings, now=ended + 61) == [str(upload)]
    assert not upload.exists()


def test_with_a_single_redis_an_ended_jobs_upload_goes_at_its_end(
    queue: Queue, settings: Settings
) -> None:
    job_id = enqueue(queue, settings)
    upload = upload_file(settings, f"{job_id}.wav")
    job = load_job(queue, job_id)
    assert job is not None
    job.set_status(JobStatus.FAILED)
    end_job(job, settings)
    assert not upload.exists()


def test_sweeper_tolerates_a_missing_folder(queue: Queue, settings: Settings) -> None:
    assert not settings.upload_dir.exists()
    assert sweep_uploads(queue, settings) == []


def take_like_a_dying_worker(queue: Queue, redis: fakeredis.FakeRedis) -> None:
    """What rq's dequeue does first (queue → intermediate list), and nothing after."""
    redis.lmove(queue.key, queue.intermediate_queue.key)


def test_a_job_stranded_by_a_dead_worker_goes_back_to_the_queue(
    queue: Queue, redis: fakeredis.FakeRedis, settings: Settings
) -> None:
    job_id = enqueue(queue, settings)
    jobs = jobs_queue(queue)
    take_like_a_dying_worker(jobs, redis)
    assert jobs.job_ids == []
    assert requeue_stranded(jobs, grace_s=30) == []  # first sighting
    assert requeue_stranded(jobs, grace_s=30, now=time.time() + 10) == []
    assert requeue_stranded(jobs, grace_s=30, now=time.time() + 31) == [job_id]
    assert jobs.job_ids == [job_id]
    assert jobs.intermediate_queue.get_job_ids() == []
    job = load_job(queue, job_id)
    assert job is not None
    assert job.get_status() == JobStatus.QUEUED
    assert job.retries_left == settings.job_retries  # it never ran: no attempt spent


def test_a_job_that_started_is_not_stranded(
    queue: Queue, redis: fakeredis.FakeRedis, settings: Settings
) -> None:
    enqueue(queue, settings)
    jobs = jobs_queue(queue)
    worker = TranscriptionWorker([jobs, queue], connection=redis, runtime=fake_runtime(settings))
    dequeued = jobs.dequeue_any([jobs], None, connection=redis, serializer=queue.serializer)
    assert dequeued is not None
    redis.rpush(jobs.intermediate_queue.key, dequeued[0].id)  # as if its removal were late
    worker.prepare_execution(dequeued[0])
    requeue_stranded(jobs, grace_s=30)
    assert requeue_stranded(jobs, grace_s=30, now=time.time() + 60) == []
    assert jobs.job_ids == []


def test_maintenance_requeues_stranded_jobs_too(
    queue: Queue, redis: fakeredis.FakeRedis, settings: Settings
) -> None:
    job_id = enqueue(queue, settings)
    jobs = jobs_queue(queue)
    take_like_a_dying_worker(jobs, redis)
    run_maintenance(queue, settings)
    run_maintenance(queue, settings, now=time.time() + 60)
    assert jobs.job_ids == [job_id]


def test_rq_registry_cleanup_waits_for_the_maintenance_lock(
    queue: Queue, redis: fakeredis.FakeRedis, settings: Settings
) -> None:
    """Two cleanups at once would hand one abandoned job to the retry logic twice."""
    job_id = enqueue(queue, settings)
    jobs = jobs_queue(queue)
    worker = TranscriptionWorker([jobs, queue], connection=redis, runtime=fake_runtime(settings))
    dequeued = jobs.dequeue_any([jobs], None, connection=redis, serializer=queue.serializer)
    assert dequeued is not None
    worker.prepare_execution(dequeued[0])
    registry = jobs.started_job_registry
    entries = cast("list[bytes]", redis.zrange(registry.key, 0, -1))
    redis.zadd(registry.key, dict.fromkeys(entries, 1))  # heartbeats long expired
    with maintenance_lock(queue) as lock:
        assert lock is not None
        worker.clean_registries()
        assert jobs.job_ids == []
    worker.clean_registries()
    assert jobs.job_ids == [job_id]


def test_the_lock_of_a_worker_killed_mid_pass_expires_within_its_ttl(
    queue: Queue, redis: fakeredis.FakeRedis
) -> None:
    """A worker killed in a pass (no release) must not hold off recovery for long."""
    key = Keys(queue.name).maintenance_lock
    dying = maintenance_lock(queue)
    assert dying.__enter__() is not None  # ... and never exits
    assert 0 < redis.pttl(key) <= MAINTENANCE_LOCK_TTL_S * 1000
    with maintenance_lock(queue) as lock:
        assert lock is None  # held until it expires
    redis.delete(key)  # as its expiry does
    with maintenance_lock(queue) as lock:
        assert lock is not None


def test_a_pass_extends_its_lock_at_every_queue(
    queue: Queue, redis: fakeredis.FakeRedis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueue(queue, settings)  # a route queue beside QUEUE_NAME's own
    key = Keys(queue.name).maintenance_lock
    ttls_ms: list[int] = []

    def slow_recover(*_: object) -> list[object]:
        ttls_ms.append(redis.pttl(key))
        redis.pexpire(key, 500)  # as if the queue took most of the lock's time
        return []

    monkeypatch.setattr(maintenance, "recover_abandoned", slow_recover)
    run_maintenance(queue, settings)
    assert len(ttls_ms) == 2
    assert all(ttl > (MAINTENANCE_LOCK_TTL_S - 1) * 1000 for ttl in ttls_ms), ttls_ms
    assert not redis.exists(key)  # released at the end


def test_a_pass_that_lost_its_lock_stops_and_leaves_the_new_holders(
    queue: Queue, redis: fakeredis.FakeRedis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueue(queue, settings)
    key = Keys(queue.name).maintenance_lock
    seen: list[str] = []

    def stalled_recover(each: Queue, *_: object) -> list[object]:
        seen.append(each.name)
        redis.set(key, "another-worker")  # it expired during a stall; another worker took it
        return []

    monkeypatch.setattr(maintenance, "recover_abandoned", stalled_recover)
    run_maintenance(queue, settings)
    assert len(seen) == 1  # the second queue is left to the new holder
    assert redis.get(key) == b"another-worker"


def test_finishing_a_job_waits_out_a_short_redis_outage(
    redis: fakeredis.FakeRedis, queue: Queue, settings: Settings
) -> None:
    settings.redis_outage_wait_s = 5
    worker = TranscriptionWorker([queue], connection=redis, runtime=fake_runtime(settings))
    attempts: list[float] = []

    def record() -> str:
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise RedisConnectionError("Connection refused")
        return "stored"

    assert worker._outlast_redis_outage(record, "record a result") == "stored"
    assert len(attempts) == 3


def test_a_long_redis_outage_gives_up(
    redis: fakeredis.FakeRedis, queue: Queue, settings: Settings
) -> None:
    settings.redis_outage_wait_s = 0
    worker = TranscriptionWorker([queue], connection=redis, runtime=fake_runtime(settings))

    def record() -> None:
        raise RedisConnectionError("Connection refused")

    with pytest.raises(RedisConnectionError):
        worker._outlast_redis_outage(record, "record a result")


def test_a_worker_loop_that_ended_on_a_redis_failure_is_unregistered_before_the_next(
    queue: Queue, redis: fakeredis.FakeRedis, settings: Settings
) -> None:
    """Its registration (replicated before a failover, say) must not count as a second worker."""
    old = TranscriptionWorker([queue], connection=redis, runtime=fake_runtime(settings))
    old.register_birth()  # type: ignore[no-untyped-call]
    assert [each.name for each in Worker.all(queue=queue)] == [old.name]
    forget(old)
    assert Worker.all(queue=queue) == []
