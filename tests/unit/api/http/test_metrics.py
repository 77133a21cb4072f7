"""GET /metrics on one API process: requests by route template, jobs, queues read at scrape."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import Queue

from api.http.app import create_app
from api.http.deps import get_queue
from api.http.metrics import multiprocess_mode
from api.jobs.cancel import cancel_job
from api.keys.store import KeyStore
from common.contract import load_job
from config import Settings

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def post(client: TestClient, audio: Path, model: str = "tiny.en") -> str:
    with audio.open("rb") as handle:
        response = client.post(
            "/transcribe",
            files={"file": (audio.name, handle, "audio/wav")},
            data={"engine": "whisperx", "model": model},
        )
    assert response.status_code == 200, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def test_one_process_serves_its_default_registry(client: TestClient) -> None:
    assert not multiprocess_mode()  # no PROMETHEUS_MULTIPROC_DIR: as under plain uvicorn
    samples = scrape(client)
    assert value(samples, "transcribe_redis_up") == 1
    assert value(samples, "transcribe_workers_ready") == 0


def test_requests_are_counted_by_route_template_never_by_path(client: TestClient) -> None:
    before = scrape(client)
    job_id = "6f1c0000-0000-4000-8000-000000000000"
    assert client.get(f"/status/{job_id}").status_code == 404
    assert client.get("/wp-admin/install.php").status_code == 404
    after = scrape(client)
    route = {"route": "/status/{job_id}", "method": "GET", "status": "404"}
    counted = "transcribe_http_requests_total"
    assert value(after, counted, **route) - value(before, counted, **route) == 1
    unmatched = {"route": "unmatched", "method": "GET", "status": "404"}
    assert value(after, counted, **unmatched) - value(before, counted, **unmatched) == 1
    timed = "transcribe_http_request_duration_seconds_count"
    assert value(after, timed, route="/status/{job_id}", method="GET") >= 1
    assert not any(job_id in str(labels) for _, labels in after)


def test_queues_are_read_at_scrape_by_engine_and_model(
    client: TestClient, queue: Queue, tone_wav: Path, settings: Settings
) -> None:
    before = scrape(client)
    submitted = "transcribe_jobs_submitted_total"
    first = post(client, tone_wav)
    post(client, tone_wav)
    post(client, tone_wav, model="base")
    samples = scrape(client)
    tiny = {"engine": "whisperx", "model": "tiny.en"}
    assert value(samples, "transcribe_queue_depth", **tiny) == 2
    assert value(samples, "transcribe_queue_depth", engine="whisperx", model="base") == 1
    assert value(samples, "transcribe_queue_depth", engine="timestamped", model="base") == 0
    assert value(samples, "transcribe_queue_oldest_job_age_seconds", **tiny) > 0
    assert value(samples, "transcribe_jobs_running", **tiny) == 0
    assert value(samples, "transcribe_workers_serving", **tiny) == 0
    assert value(samples, submitted, **tiny) - value(before, submitted, **tiny) == 2

    job = load_job(queue, first)
    assert job is not None
    ended = "transcribe_jobs_ended_total"
    canceled = {**tiny, "status": "canceled"}
    assert cancel_job(settings, job) == "canceled"
    after = scrape(client)
    assert value(after, ended, **canceled) - value(samples, ended, **canceled) == 1
    assert value(after, "transcribe_queue_depth", **tiny) == 1


def test_a_scrape_while_redis_is_down_says_so(client: TestClient, queue: Queue) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise RedisConnectionError("Connection refused")

    queue.connection.eval = refuse  # type: ignore[method-assign]
    samples = scrape(client)
    assert value(samples, "transcribe_redis_up") == 0
    assert ("transcribe_queue_depth", frozenset()) not in samples


def test_metrics_can_be_turned_off(settings: Settings, queue: Queue) -> None:
    settings.metrics_enabled = False
    app = create_app(settings)
    app.dependency_overrides[get_queue] = lambda: queue
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 404
        assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_metrics_may_require_an_admin_key(settings: Settings, queue: Queue) -> None:
    settings.metrics_require_admin_key = True
    settings.admin_api_key = SecretStr("the-admin-key")
    store = KeyStore(queue.connection, queue.name)
    alice = store.create("alice")
    ops = store.create("ops", admin=True)
    app = create_app(settings)
    app.dependency_overrides[get_queue] = lambda: queue
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"X-API-Key": "nope"}).status_code == 401
        assert client.get("/metrics", headers={"X-API-Key": alice}).status_code == 403
        assert scrape(client, authorization="Bearer the-admin-key")
        assert scrape(client, authorization=f"Bearer {ops}")
        assert client.get("/health").status_code == 200  # the probes stay open
