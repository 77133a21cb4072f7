"""A worker takes only the jobs of the engine/model pairs it serves, from several queues, and
loses none of them on the way."""

from __future__ import annotations

import time
from pathlib import Path

import fakeredis
import pytest
from rq import Queue
from rq.exceptions import DequeueTimeout

from common.catalog import CatalogEntry, EngineName, Route
from common.contract import load_job, public_status
from common.routing import live_workers, serving
from config import Settings
from tests.fakes import enqueue_path, jobs_queue, queued_jobs
from worker.maintenance import requeue_stranded, reroute_unrouted, run_maintenance
from worker.routing import RoutedQueue, UnservableRoutes, served_routes, worker_queues
from worker.rq_worker import TranscriptionWorker
from worker.runtime import Runtime

TINY = Route(EngineName.WHISPERX, "tiny.en")
BASE = Route(EngineName.WHISPERX, "base")


def enqueue(queue: Queue, settings: Settings, tone_wav: Path, model: str) -> str:
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    return enqueue_path(queue, settings, tone_wav, model=model).id


def run_worker(queue: Queue, runtime: Runtime) -> None:
    """A burst of the worker `python -m worker` builds from these settings."""
    queues = worker_queues(queue, served_routes(runtime.settings))
    worker = TranscriptionWorker(
        queues, connection=queue.connection, serializer=queue.serializer, runtime=runtime
    )
    worker.work(burst=True)


def status(queue: Queue, job_id: str) -> str:
    job = load_job(queue, job_id)
    assert job is not None
    return public_status(job).value


def test_a_worker_serves_its_models_only(queue: Queue, runtime: Runtime, tone_wav: Path) -> None:
    settings = runtime.settings
    tiny = enqueue(queue, settings, tone_wav, "tiny.en")
    base = enqueue(queue, settings, tone_wav, "base")
    settings.worker_models = [BASE]
    run_worker(queue, runtime)
    assert (status(queue, tiny), status(queue, base)) == ("queued", "finished")
    assert [spec.model for spec in runtime.cache.loaded()] == ["base"]
    settings.worker_models = [TINY]
    run_worker(queue, runtime)
    assert status(queue, tiny) == "finished"
    assert queued_jobs(queue) == 0


def test_a_worker_of_every_model_takes_them_in_turns(
    queue: Queue, runtime: Runtime, tone_wav: Path
) -> None:
    settings = runtime.settings
    tiny = [enqueue(queue, settings, tone_wav, "tiny.en") for _ in range(3)]
    base = [enqueue(queue, settings, tone_wav, "base") for _ in range(3)]
    run_worker(queue, runtime)
    jobs = {job_id: load_job(queue, job_id) for job_id in tiny + base}
    order = sorted(jobs, key=lambda job_id: str(jobs[job_id].started_at))  # type: ignore[union-attr]
    assert all(status(queue, job_id) == "finished" for job_id in jobs)
    models = ["tiny" if job_id in tiny else "base" for job_id in order]
    assert models in (["tiny", "base"] * 3, ["base", "tiny"] * 3), models


def test_served_routes_must_be_offered(settings: Settings) -> None:
    assert served_routes(settings) == settings.catalogue().routes()
    settings.worker_models = [TINY, TINY, BASE]
    assert served_routes(settings) == [TINY, BASE]
    settings.allowed_models = ["tiny.en"]
    with pytest.raises(UnservableRoutes, match="whisperx/base"):
        served_routes(settings)
    settings.allowed_models = []
    settings.preload_models = [Route(EngineName.TIMESTAMPED, "tiny.en")]
    with pytest.raises(UnservableRoutes, match="does not serve"):
        served_routes(settings)
    settings.models = {"wx-only": CatalogEntry(whisperx="/models/x")}
    settings.worker_models, settings.preload_models = [Route(EngineName.TIMESTAMPED, "wx-only")], []
    with pytest.raises(UnservableRoutes, match="timestamped/wx-only"):
        served_routes(settings)


def test_every_worker_registers_on_queue_name_too(
    queue: Queue, redis: fakeredis.FakeRedis, runtime: Runtime
) -> None:
    queues = worker_queues(queue, [TINY, BASE])
    assert [each.name for each in queues] == [
        "transcribe@whisperx:tiny.en", "transcribe@whisperx:base", "transcribe",
    ]  # fmt: skip
    worker = TranscriptionWorker(queues, connection=redis, runtime=runtime)
    worker.register_birth()  # type: ignore[no-untyped-call]
    assert redis.smembers("rq:workers:transcribe") == {worker.key.encode()}
    assert redis.smembers("rq:workers:transcribe@whisperx:base") == {worker.key.encode()}


def test_taking_from_several_queues_leaves_the_job_listed_until_it_starts(
    queue: Queue, redis: fakeredis.FakeRedis, settings: Settings, tone_wav: Path
) -> None:
    base = enqueue(queue, settings, tone_wav, "base")
    queues = worker_queues(queue, [TINY, BASE])
    taken = RoutedQueue.dequeue_any(queues, None, connection=redis)
    assert taken is not None
    job, source = taken
    assert (job.id, source.name) == (base, jobs_queue(queue, "base").name)
    # A worker that dies here leaves the job where maintenance finds it, never nowhere.
    routed = jobs_queue(queue, "base")
    assert routed.intermediate_queue.get_job_ids() == [base]
    requeue_stranded(routed, grace_s=30)
    assert requeue_stranded(routed, grace_s=30, now=time.time() + 31) == [base]
    assert routed.job_ids == [base]


def test_an_empty_wait_on_several_queues_times_out(
    queue: Queue, redis: fakeredis.FakeRedis
) -> None:
    queues = worker_queues(queue, [TINY, BASE])
    assert RoutedQueue.dequeue_any(queues, None, connection=redis) is None
    started = time.monotonic()
    with pytest.raises(DequeueTimeout):
        RoutedQueue.dequeue_any(queues, 1, connection=redis)
    assert 0.9 < time.monotonic() - started < 3


def test_jobs_queued_unrouted_are_moved_to_their_models_queue(
    queue: Queue, redis: fakeredis.FakeRedis, settings: Settings, runtime: Runtime, tone_wav: Path
) -> None:
    """A job an older version put on QUEUE_NAME's own queue reaches its model's workers."""
    job_id = enqueue(queue, settings, tone_wav, "base")
    routed = jobs_queue(queue, "base")
    redis.lrem(routed.key, 1, job_id)
    redis.rpush(queue.key, job_id)
    redis.hset(f"rq:job:{job_id}", "origin", queue.name)
    assert reroute_unrouted(queue) == [job_id]
    assert reroute_unrouted(queue) == []
    assert (queue.job_ids, routed.job_ids) == ([], [job_id])
    job = load_job(queue, job_id)
    assert job is not None
    assert job.origin == routed.name
    redis.rpush(queue.key, "00000000-0000-4000-8000-00000000dead")  # no such job: dropped
    run_maintenance(queue, settings)
    assert queue.job_ids == []
    settings.worker_models = [BASE]
    run_worker(queue, runtime)
    assert status(queue, job_id) == "finished"


def test_maintenance_forgets_a_dead_workers_pairs(
    queue: Queue, redis: fakeredis.FakeRedis, runtime: Runtime
) -> None:
    """A worker killed without a word stops counting as serving its pairs once its
    registration expires, even for a pair that never had a job."""
    worker = TranscriptionWorker(worker_queues(queue, [BASE]), connection=redis, runtime=runtime)
    worker.register_birth()  # type: ignore[no-untyped-call]
    assert serving(redis, queue.name, [BASE]) == {BASE: 1}
    run_maintenance(queue, runtime.settings)
    assert serving(redis, queue.name, [BASE]) == {BASE: 1}  # alive: kept
    redis.delete(worker.key)  # its heartbeats stopped and the key expired
    run_maintenance(queue, runtime.settings)
    assert serving(redis, queue.name, [BASE]) == {BASE: 0}
    assert live_workers(redis, queue.name) == 0
