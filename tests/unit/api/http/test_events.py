"""GET /jobs/{id}/events through the app on fakeredis: the SSE wire, its errors, ownership."""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import fakeredis
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from rq import Queue

from api.http.app import create_app
from api.http.deps import get_event_reader, get_queue
from api.jobs.events import JobEventReader
from api.keys.store import KeyStore
from common.contract import load_job
from common.events import publish_end
from config import Settings
from tests.fakes import enqueue_audio, enqueue_path, work
from worker.runtime import Runtime


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def redis(server: fakeredis.FakeServer) -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=server)


def app_client(settings: Settings, queue: Queue, server: fakeredis.FakeServer) -> TestClient:
    app = create_app(settings)
    reader = JobEventReader(fakeredis.FakeAsyncRedis(server=server), queue, idle_s=0.05)
    app.dependency_overrides[get_queue] = lambda: queue
    app.dependency_overrides[get_event_reader] = lambda: reader
    return TestClient(app)


@pytest.fixture
def client(
    worker_settings: Settings, queue: Queue, server: fakeredis.FakeServer
) -> Iterator[TestClient]:
    with app_client(worker_settings, queue, server) as test_client:
        yield test_client


def read_sse(text: str) -> list[dict[str, str]]:
    """The events of an SSE body: one dict of fields each (comments as `comment`)."""
    events = []
    for block in text.strip().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            fields["comment" if name == "" else name] = value
        events.append(fields)
    return events


def test_an_ended_jobs_events_are_its_status_and_segments_on_the_sse_wire(
    client: TestClient, queue: Queue, runtime: Runtime, tone_wav: Path
) -> None:
    job_id = enqueue_audio(queue, runtime.settings, tone_wav).id
    work(queue, runtime)
    response = client.get(f"/jobs/{job_id}/events")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    status, segment = read_sse(response.text)
    assert status["event"] == "status"
    assert json.loads(status["data"])["status"] == "finished"
    assert "result" not in json.loads(status["data"])
    assert segment["event"] == "segment"
    job = load_job(queue, job_id)
    assert job is not None
    result = job.return_value()
    assert result is not None
    assert json.loads(segment["data"]) == result["segments"][0]  # the transcript's own segment
    assert json.loads(segment["data"])["text"] == "w0"
    resumed = client.get(f"/jobs/{job_id}/events", headers={"Last-Event-ID": status["id"]})
    # After the status's id: the segment, transcribing at 100 %, done, and the end.
    assert [event["event"] for event in read_sse(resumed.text)] == [
        "segment",
        "progress",
        "progress",
        "status",
    ]


def test_a_running_job_is_followed_with_keep_alives_until_its_end(
    client: TestClient, queue: Queue, worker_settings: Settings, tmp_path: Path
) -> None:
    job = enqueue_path(queue, worker_settings, tmp_path / "a.wav")
    with client.stream("GET", f"/jobs/{job.id}/events") as response:
        lines = response.iter_lines()
        assert next(lines) == "event: status"
        assert json.loads(next(lines).removeprefix("data: "))["status"] == "queued"
        assert next(lines) == "id: 0-0"
        assert next(lines) == ""
        assert next(lines) == ": keep-alive"
        job.cancel()
        publish_end(job)
        rest = list(lines)
    assert '"status":"canceled"' in "\n".join(rest)
    # A keep-alive is a lone comment line: a blank line after it would make httpx-sse (which
    # remembers the last id) hand its reader an empty event.
    seen = [": keep-alive", *rest]
    after_keep_alives = [line for before, line in pairwise(seen) if before == ": keep-alive"]
    assert after_keep_alives
    assert "" not in after_keep_alives


def test_unknown_jobs_are_404_and_a_malformed_last_event_id_is_400(
    client: TestClient, queue: Queue, worker_settings: Settings, tmp_path: Path
) -> None:
    assert client.get("/jobs/not-a-job/events").status_code == 404
    unknown = "00000000-0000-4000-8000-000000000000"
    assert client.get(f"/jobs/{unknown}/events").status_code == 404
    job = enqueue_path(queue, worker_settings, tmp_path / "a.wav")
    response = client.get(f"/jobs/{job.id}/events", headers={"Last-Event-ID": "yesterday"})
    assert response.status_code == 400
    assert "Last-Event-ID 'yesterday' is not an event id" in response.json()["detail"]


def test_another_keys_job_is_404_like_an_unknown_one(
    worker_settings: Settings, queue: Queue, server: fakeredis.FakeServer, tmp_path: Path
) -> None:
    worker_settings.require_api_key = True
    worker_settings.admin_api_key = SecretStr("admin-secret-for-tests")
    store = KeyStore(queue.connection, queue.name)
    alice, bob = store.create("alice"), store.create("bob")
    job = enqueue_path(queue, worker_settings, tmp_path / "a.wav", owner="alice")
    job.cancel()
    with app_client(worker_settings, queue, server) as client:
        url = f"/jobs/{job.id}/events"
        assert client.get(url).status_code == 401
        assert client.get(url, headers={"Authorization": f"Bearer {bob}"}).status_code == 404
        own = client.get(url, headers={"Authorization": f"Bearer {alice}"})
        assert own.status_code == 200
        assert read_sse(own.text)[0]["event"] == "status"
