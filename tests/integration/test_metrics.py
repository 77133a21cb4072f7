"""Metrics end to end: a real Prometheus scrapes the API (gunicorn, 2 processes) and a preloaded
worker, and PromQL sees the job counters and the queue depth move as jobs run; an idle model
leaves a worker's metrics and its memory."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.audio import JFK
from tests.prometheus import Prometheus, running_prometheus
from tests.services import Service, free_port, running_service, submit, wait_for_job, wait_until

pytestmark = pytest.mark.integration

TINY = 'engine="whisperx",model="tiny.en"'
MIB = 2**20


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, int]]:
    """The API under gunicorn with 2 processes, and one worker that preloads whisperx/tiny.en
    and serves its metrics; with the worker's metrics port."""
    metrics_port = free_port()
    worker_env = {
        "PRELOAD_MODELS": "whisperx/tiny.en",
        "WORKER_METRICS_PORT": str(metrics_port),
        "WHISPERX_ALIGN": "false",
    }
    root = tmp_path_factory.mktemp("metrics")
    with running_service(root, web_workers=2, worker_env=worker_env) as service:
        yield service, metrics_port


@pytest.fixture(scope="module")
def prometheus(deployment: tuple[Service, int]) -> Iterator[Prometheus]:
    service, metrics_port = deployment
    jobs = {"api": [f"127.0.0.1:{service.api_port}"], "worker": [f"127.0.0.1:{metrics_port}"]}
    with running_prometheus(service, jobs) as running:
        running.wait_for('count(up{job=~"api|worker"} == 1) == 2')
        yield running


def scrape(port: int) -> dict[str, float]:
    """A worker's metrics, `name{labels}` → value."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_a_preloaded_worker_is_ready_with_its_model_and_its_first_job_loads_none(
    deployment: tuple[Service, int],
) -> None:
    service, metrics_port = deployment
    before = scrape(metrics_port)
    assert before["transcribe_worker_ready"] == 1
    assert before[f"transcribe_model_loaded{{{TINY}}}"] == 1
    assert before[f"transcribe_model_load_seconds_count{{{TINY}}}"] == 1  # the preload
    assert "preloaded whisperx/tiny.en" in service.workers[0].log()
    with service.client() as client:
        body = wait_for_job(client, submit(client, JFK, "whisperx"))
    assert body["status"] == "finished", body["error"]
    assert body["result"]["timings"]["model_load_s"] == 0
    assert "ask not what your country can do for you" in body["result"]["text"].lower()
    after = scrape(metrics_port)
    assert after[f"transcribe_model_load_seconds_count{{{TINY}}}"] == 1
    ended = f'transcribe_jobs_ended_total{{{TINY},status="finished"}}'
    assert after[ended] - before.get(ended, 0) == 1
    assert after[f"transcribe_audio_seconds_total{{{TINY}}}"] >= 11


def test_prometheus_sees_the_counters_and_the_queue_depth_move(
    deployment: tuple[Service, int], prometheus: Prometheus
) -> None:
    service, _ = deployment
    submitted = f"sum(transcribe_jobs_submitted_total{{{TINY}}})"
    finished = f'sum(transcribe_jobs_ended_total{{{TINY},status="finished"}})'
    posts = 'sum(transcribe_http_requests_total{route="/transcribe",status="200"})'
    start = {expr: prometheus.value(expr) or 0.0 for expr in (submitted, finished, posts)}
    jobs = 4
    with service.client() as client:
        ids = [submit(client, JFK, "whisperx") for _ in range(jobs)]
        # They wait behind each other on the one worker: the depth is seen above 0 ...
        prometheus.wait_for(f"transcribe_queue_depth{{{TINY}}} > 0", 30)
        for job_id in ids:
            assert wait_for_job(client, job_id)["status"] == "finished"
    # ... and every count arrives, from both gunicorn processes and the worker.
    prometheus.wait_for(f"{submitted} >= {start[submitted] + jobs}", 30)
    prometheus.wait_for(f"{posts} >= {start[posts] + jobs}", 30)
    prometheus.wait_for(f"{finished} >= {start[finished] + jobs}", 30)
    prometheus.wait_for(f"transcribe_queue_depth{{{TINY}}} == 0", 30)
    peak = prometheus.value(f"max_over_time(transcribe_queue_depth{{{TINY}}}[5m])")
    assert peak is not None
    assert 1 <= peak <= jobs
    assert prometheus.value(f"transcribe_workers_serving{{{TINY}}}") == 1
    durations = prometheus.value('sum(transcribe_job_duration_seconds_count{job="worker"})')
    assert (durations or 0) >= jobs
    rtf = prometheus.value(
        "sum(transcribe_job_duration_seconds_sum) / sum(transcribe_audio_seconds_total)"
    )
    assert rtf is not None
    assert 0 < rtf < 2


def test_an_idle_model_is_unloaded_and_its_memory_released(tmp_path: Path) -> None:
    metrics_port = free_port()
    worker_env = {
        "MODEL_IDLE_TTL_S": "3",
        "WORKER_METRICS_PORT": str(metrics_port),
        "WHISPERX_ALIGN": "false",
    }
    with running_service(tmp_path, worker_env=worker_env) as service, service.client() as client:
        assert wait_for_job(client, submit(client, JFK, "whisperx"))["status"] == "finished"
        loaded = scrape(metrics_port)
        assert loaded.get(f"transcribe_model_loaded{{{TINY}}}") == 1
        resident = loaded["process_resident_memory_bytes"]

        def unloaded() -> dict[str, float] | None:
            samples = scrape(metrics_port)
            return samples if f"transcribe_model_loaded{{{TINY}}}" not in samples else None

        started = time.monotonic()
        after: dict[str, float] = wait_until(unloaded, 60, "the idle model to be unloaded", 0.5)
        assert time.monotonic() - started < 30
        assert after[f'transcribe_model_unloads_total{{{TINY},reason="idle"}}'] == 1

        def released() -> float | None:  # the trim follows the unload within moments
            drop = resident - scrape(metrics_port)["process_resident_memory_bytes"]
            return drop if drop >= 64 * MIB else None

        drop = wait_until(released, 10, f"RSS ({resident / MIB:.0f} MiB) to drop by 64 MiB", 0.5)
        assert drop >= 64 * MIB
        # The next job loads it again.
        body = wait_for_job(client, submit(client, JFK, "whisperx"))
        assert body["result"]["timings"]["model_load_s"] > 0
