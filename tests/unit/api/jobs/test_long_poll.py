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

from api.http.app import create_app
from api.http.deps import get_job_waiter, get_queue
from api.jobs.long_poll import JobEndWaiter
from common.contract import Keys
from config import Settings
from tests.fakes import enqueue_audio, jobs_queue, work
from worker.maintenance import run_maintenance
from worker.rq_worker import TranscriptionWorker
from worker.runtime import Runtime


@pytest.fixture
def server() -> fakeredis.FakeServer:
    """One in-memory Redis server for the API's sync and async clients and the worker."""
    return fakeredis.FakeServer()


@pytest.fixture
def redis(server: fakeredis.FakeServer) -> fakeredis.FakeRedis:
    """The sync client (replaces the unit tier's own, so `queue` lives on `server`)."""
    return fakeredis.FakeRedis(server=server)


@pytest.fixture
def client(
    worker_settings: Settings, queue: Queue, server: fakeredis.FakeServer
) -> Iterator[TestClient]:
    """The API with its settings, queue and job-end waiter on fakeredis."""
    app = create_app(worker_settings)
    waiter = JobEndWaiter(fakeredis.FakeAsyncRedis(server=server), queue.name)
    app.dependency_overrides[get_queue] = lambda: queue
    app.dependency_overrides[get_job_waiter] = lambda: waiter
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def job_id(queue: Queue, worker_settings: Settings, tone_wav: Path) -> str:
    """A queued job of one second of audio."""
    return enqueue_audio(queue, worker_settings, tone_wav).id


def timed_get(client: TestClient, url: str) -> tuple[float, Any]:
    started = time.monotonic()
    response = client.get(url)
    return time.monotonic() - started, response


def test_every_waiter_is_answered_as_soon_as_the_job_ends(
    client: TestClient, queue: Queue, runtime: Runtime, job_id: str
) -> None:
    with ThreadPoolExecutor(2) as pool:
        waiters = [pool.submit(timed_get, client, f"/status/{job_id}?wait=20") for _ in range(2)]
        time.sleep(0.3)
        assert not any(waiter.done() for waiter in waiters), "answered before the job ended"
        work(queue, runtime)
        for waiter in waiters:
            elapsed, response = waiter.result(timeout=10)
            assert response.status_code == 200
            assert response.json()["status"] == "finished"
            assert response.json()["result"]["text"] == "w0"
            assert elapsed < 10


def test_wait_ends_after_n_seconds_with_the_current_state(client: TestClient, job_id: str) -> None:
    elapsed, response = timed_get(client, f"/status/{job_id}?wait=0.5")
    assert response.status_code == 200
    assert response.json()["status"] == "queued"
    assert 0.5 <= elapsed < 5


def test_an_ended_job_is_answered_at_once(
    client: TestClient, queue: Queue, runtime: Runtime, job_id: str
) -> None:
    work(queue, runtime)
    queue.connection.delete(Keys(queue.name).ended(job_id))  # the signal has expired
    elapsed, response = timed_get(client, f"/status/{job_id}?wait=30")
    assert response.json()["status"] == "finished"
    assert elapsed < 5


def test_a_failed_job_wakes_its_waiter(
    client: TestClient,
    queue: Queue,
    worker_settings: Settings,
    tone_wav: Path,
    runtime: Runtime,
) -> None:
    job_id = enqueue_audio(queue, worker_settings, tone_wav, model="broken").id
    with ThreadPoolExecutor(1) as pool:
        waiter = pool.submit(timed_get, client, f"/status/{job_id}?wait=20")
        time.sleep(0.2)
        work(queue, runtime)
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
    queue: Queue, worker_settings: Settings, runtime: Runtime, job_id: str
) -> None:
    signal = Keys(queue.name).ended(job_id)
    for attempt in range(worker_settings.job_retries + 1):
        doomed = TranscriptionWorker(
            [jobs_queue(queue), queue], connection=queue.connection,
            serializer=queue.serializer, runtime=runtime,
        )  # fmt: skip
        jobs = jobs_queue(queue)
        dequeued = jobs.dequeue_any(
            [jobs], None, connection=queue.connection, serializer=queue.serializer
        )
        assert dequeued is not None, f"attempt {attempt}: the job was not requeued"
        doomed.prepare_execution(dequeued[0])
        doomed.prepare_job_execution(dequeued[0])
        assert not queue.connection.exists(signal), "announced while another attempt was due"
        later = time.time() + worker_settings.heartbeat_ttl_s + 1
        run_maintenance(queue, worker_settings, now=later)
    assert queue.connection.exists(signal)
    assert 0 < queue.connection.ttl(signal) <= 600
