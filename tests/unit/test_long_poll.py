"""Long-polling `GET /status/{id}?wait=N` on fakeredis, with the real worker and a fake engine."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from fastapi.testclient import TestClient
from rq import Queue

from api.deps import get_job_waiter, get_queue
from api.long_poll import JobEndWaiter
from api.main import create_app
from common.job_events import ended_key
from config import Settings, get_settings
from tests.unit.jobs import enqueue_audio
from worker.engines.fake import FakeEngine
from worker.rq_worker import TranscriptionWorker, run_maintenance
from worker.runtime import Runtime, install_runtime

FAKE_ENGINES = {
    "whisperx": "worker.engines.fake:FakeEngine",
    "timestamped": "worker.engines.fake:FakeEngine",
}


@pytest.fixture
def server() -> fakeredis.FakeServer:
    """One in-memory Redis server for the API's sync and async clients and the worker."""
    return fakeredis.FakeServer()


@pytest.fixture
def redis(server: fakeredis.FakeServer) -> fakeredis.FakeRedis:
    """The sync client (replaces the unit tier's own, so `queue` lives on `server`)."""
    return fakeredis.FakeRedis(server=server)


@pytest.fixture
def worker_settings(settings: Settings) -> Settings:
    """Settings for an in-process worker on the CPU, one retry."""
    settings.device = "cpu"
    settings.job_retries = 1
    install_runtime(Runtime.from_settings(settings, engines=FAKE_ENGINES))
    return settings


@pytest.fixture
def client(
    worker_settings: Settings, queue: Queue, server: fakeredis.FakeServer
) -> Iterator[TestClient]:
    """The API with its settings, queue and job-end waiter on fakeredis."""
    app = create_app()
    waiter = JobEndWaiter(fakeredis.FakeAsyncRedis(server=server), queue.key)
    app.dependency_overrides[get_settings] = lambda: worker_settings
    app.dependency_overrides[get_queue] = lambda: queue
    app.dependency_overrides[get_job_waiter] = lambda: waiter
    with TestClient(app) as test_client:
        yield test_client


def work(queue: Queue, settings: Settings) -> None:
    """Run every queued job in this (the main) thread, as `python -m worker` would."""
    worker = TranscriptionWorker(
        [queue], connection=queue.connection, serializer=queue.serializer, settings=settings
    )
    worker.work(burst=True)


def timed_get(client: TestClient, url: str) -> tuple[float, Any]:
    started = time.monotonic()
    response = client.get(url)
    return time.monotonic() - started, response


def test_every_waiter_is_answered_as_soon_as_the_job_ends(
    client: TestClient, queue: Queue, worker_settings: Settings, tone_wav: Path
) -> None:
    job_id = enqueue_audio(queue, worker_settings, tone_wav).id
    with ThreadPoolExecutor(2) as pool:
        waiters = [pool.submit(timed_get, client, f"/status/{job_id}?wait=20") for _ in range(2)]
        time.sleep(0.3)
        assert not any(waiter.done() for waiter in waiters), "answered before the job ended"
        work(queue, worker_settings)
        for waiter in waiters:
            elapsed, response = waiter.result(timeout=10)
            assert response.status_code == 200
            assert response.json()["status"] == "finished"
            assert response.json()["result"]["text"] == "w0"
            assert elapsed < 10


def test_wait_ends_after_n_seconds_with_the_current_state(
    client: TestClient, queue: Queue, worker_settings: Settings, tone_wav: Path
) -> None:
    job_id = enqueue_audio(queue, worker_settings, tone_wav).id
    elapsed, response = timed_get(client, f"/status/{job_id}?wait=0.5")
    assert response.status_code == 200
    assert response.json()["status"] == "queued"
    assert 0.5 <= elapsed < 5


def test_an_ended_job_is_answered_at_once(
    client: TestClient, queue: Queue, worker_settings: Settings, tone_wav: Path
) -> None:
    job_id = enqueue_audio(queue, worker_settings, tone_wav).id
    work(queue, worker_settings)
    queue.connection.delete(ended_key(queue.key, job_id))  # the signal has expired
    elapsed, response = timed_get(client, f"/status/{job_id}?wait=30")
    assert response.json()["status"] == "finished"
    assert elapsed < 5


def test_a_failed_job_wakes_its_waiter(
    client: TestClient, queue: Queue, worker_settings: Settings, tone_wav: Path
) -> None:
    job_id = enqueue_audio(queue, worker_settings, tone_wav, model="broken").id
    with ThreadPoolExecutor(1) as pool:
        waiter = pool.submit(timed_get, client, f"/status/{job_id}?wait=20")
        time.sleep(0.2)
        work(queue, worker_settings)
        elapsed, response = waiter.result(timeout=10)
    assert response.json()["status"] == "failed"
    assert elapsed < 10


def test_unknown_job_is_404_without_waiting(client: TestClient) -> None:
    elapsed, response = timed_get(client, f"/status/{uuid.uuid4()}?wait=30")
    assert response.status_code == 404
    assert elapsed < 5


@pytest.mark.parametrize("wait", ["-1", "60.5", "abc"])
def test_wait_outside_0_to_60_is_rejected(client: TestClient, wait: str) -> None:
    response = client.get(f"/status/{uuid.uuid4()}", params={"wait": wait})
    assert response.status_code == 422


def test_abandoned_job_is_announced_only_once_it_fails_for_good(
    queue: Queue, worker_settings: Settings, tone_wav: Path
) -> None:
    FakeEngine.loads = 0
    job_id = enqueue_audio(queue, worker_settings, tone_wav).id
    signal = ended_key(queue.key, job_id)
    for attempt in range(worker_settings.job_retries + 1):
        doomed = TranscriptionWorker(
            [queue], connection=queue.connection, serializer=queue.serializer,
            settings=worker_settings,
        )  # fmt: skip
        dequeued = queue.dequeue_any(
            [queue], None, connection=queue.connection, serializer=queue.serializer
        )
        assert dequeued is not None, f"attempt {attempt}: the job was not requeued"
        doomed.prepare_execution(dequeued[0])
        doomed.prepare_job_execution(dequeued[0])
        assert not queue.connection.exists(signal), "announced while another attempt was due"
        run_maintenance(queue, now=time.time() + worker_settings.heartbeat_ttl_s + 1)
    assert queue.connection.exists(signal)
    assert 0 < queue.connection.ttl(signal) <= 600
