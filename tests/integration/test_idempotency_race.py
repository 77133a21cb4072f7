"""Concurrent retries with one Idempotency-Key against a real redis-server and worker.

Every id the API answers with 200 must reach `finished`; no job may be left `queued` outside
the queue's list; no upload may stay behind. Racing clients retry a 409 ("still being
handled") at once, as an impatient client does, which is what exposed a lookup that removed
the first request's job from the queue while it was being enqueued.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from redis import Redis

from common.catalog import EngineName, Route
from common.contract import Keys, route_queue_name
from tests.audio import write_tone_wav
from tests.services import Service, running_service, wait_until

JOBS_QUEUE = Keys(route_queue_name("transcribe", Route(EngineName.WHISPERX, "tiny.en"))).queue
"""Where the API queues these jobs (whisperx with the default model)."""

pytestmark = pytest.mark.integration

ROUNDS = 40
RACERS = 8
MAX_TRIES = 2000
"""A racer gives up after this many 409s; a round's key is free long before that."""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Its own deployment (two API processes), so other tests' jobs do not mix in."""
    with running_service(tmp_path_factory.mktemp("race"), web_workers=2) as running:
        yield running


def _race(url: str, audio: bytes, key: str, start: threading.Barrier) -> list[str]:
    """One client: POST until it gets an answer other than 409; the ids it was given."""
    ids: list[str] = []
    with httpx.Client(base_url=url, timeout=60) as client:
        start.wait()
        for _ in range(MAX_TRIES):
            response = client.post(
                "/transcribe",
                files={"file": ("tone.wav", audio)},
                data={"engine": "whisperx"},
                headers={"Idempotency-Key": key},
            )
            if response.status_code == 409:
                continue
            assert response.status_code == 200, response.text
            ids.append(response.json()["job_id"])
            break
    return ids


def test_concurrent_same_key_submissions_lose_no_job(deployment: Service, tmp_path: Path) -> None:
    # A short file keeps each retry cheap, so racers look up the key often while it is pending.
    audio = write_tone_wav(tmp_path / "tone.wav", seconds=0.5).read_bytes()
    answered: list[str] = []
    for _ in range(ROUNDS):
        key = f"race-{uuid.uuid4()}"
        start = threading.Barrier(RACERS)
        with ThreadPoolExecutor(RACERS) as pool:
            racers = [pool.submit(_race, deployment.url, audio, key, start) for _ in range(RACERS)]
            ids = {job_id for racer in racers for job_id in racer.result(timeout=120)}
        assert len(ids) == 1, f"one key gave several jobs: {ids}"
        answered.extend(ids)

    redis = Redis(port=deployment.redis_port)
    with httpx.Client(base_url=deployment.url, timeout=60) as client:
        states = wait_for_all(client, answered, timeout_s=120)
    stuck = [
        job_id
        for job_id, status in states.items()
        if status == "queued" and redis.lpos(JOBS_QUEUE, job_id) is None
    ]
    assert not stuck, f"{len(stuck)} accepted job(s) queued outside the queue: {stuck}"
    assert set(states.values()) == {"finished"}, states
    wait_until(
        lambda: not _leftovers(deployment.upload_dir), 30, "every upload of an ended job to go"
    )


def wait_for_all(client: httpx.Client, ids: list[str], timeout_s: float) -> dict[str, str]:
    """Poll until every job has ended or the deadline passes; each job's last status."""
    deadline = time.monotonic() + timeout_s
    states: dict[str, str] = {}
    while True:
        states = {job_id: client.get(f"/status/{job_id}").json()["status"] for job_id in ids}
        if all(status in ("finished", "failed", "canceled") for status in states.values()):
            return states
        if time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def _leftovers(upload_dir: Path) -> list[Path]:
    return [path for path in upload_dir.iterdir() if path.is_file()]
