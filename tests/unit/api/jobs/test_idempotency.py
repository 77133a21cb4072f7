"""Idempotency-Key on POST /transcribe: a retried upload gets the first job, never a second."""

from __future__ import annotations

import json
from pathlib import Path

import fakeredis
import httpx2
import pytest
from fastapi.testclient import TestClient
from rq import Queue
from rq.job import Job, JobStatus

from api.errors import ServiceError
from api.jobs.idempotency import (
    Claim,
    Fingerprint,
    Replay,
    claim,
    redis_key,
)
from common.contract import load_job
from config import Settings
from tests.audio import write_tone_wav
from tests.fakes import jobs_queue, queued_jobs
from tests.unit.conftest import uploads_left


def post(client: TestClient, audio: Path, key: str | None, **fields: str) -> httpx2.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    with audio.open("rb") as handle:
        return client.post(
            "/transcribe",
            files={"file": (audio.name, handle, "audio/wav")},
            data={"engine": "whisperx", **fields},
            headers=headers,
        )


@pytest.fixture
def other_wav(tmp_path: Path) -> Path:
    """Real audio with different bytes from `tone_wav`."""
    return write_tone_wav(tmp_path / "other.wav", seconds=2.0)


def test_same_key_and_file_returns_the_first_job(
    client: TestClient, tone_wav: Path, queue: Queue, settings: Settings
) -> None:
    first = post(client, tone_wav, "order-17")
    again = post(client, tone_wav, "order-17")
    assert first.status_code == again.status_code == 200
    assert again.json()["job_id"] == first.json()["job_id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == f"/status/{first.json()['job_id']}"
    assert queued_jobs(queue) == 1
    assert len(uploads_left(settings)) == 1


def test_same_key_with_another_file_is_409_and_changes_nothing(
    client: TestClient, tone_wav: Path, other_wav: Path, queue: Queue, settings: Settings
) -> None:
    first = post(client, tone_wav, "order-18")
    clash = post(client, other_wav, "order-18")
    assert clash.status_code == 409
    assert "different file" in clash.json()["detail"]
    assert first.json()["job_id"] in clash.json()["detail"]
    assert queued_jobs(queue) == 1
    assert len(uploads_left(settings)) == 1


def test_same_key_with_other_fields_is_409(client: TestClient, tone_wav: Path) -> None:
    assert post(client, tone_wav, "order-19").status_code == 200
    clash = post(client, tone_wav, "order-19", language="en")
    assert clash.status_code == 409
    assert "different fields" in clash.json()["detail"]


def test_without_a_key_each_upload_is_a_job(
    client: TestClient, tone_wav: Path, queue: Queue
) -> None:
    ids = {post(client, tone_wav, None).json()["job_id"] for _ in range(2)}
    assert len(ids) == 2
    assert queued_jobs(queue) == 2


def test_a_refused_upload_does_not_use_up_its_key(
    client: TestClient, tmp_path: Path, tone_wav: Path, queue: Queue
) -> None:
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"\x13" * 4096)
    assert post(client, garbage, "order-20").status_code == 415
    accepted = post(client, tone_wav, "order-20")
    assert accepted.status_code == 200
    assert queued_jobs(queue) == 1


def test_a_key_still_being_handled_is_409_with_retry_after(
    client: TestClient, tone_wav: Path, redis: fakeredis.FakeRedis, queue: Queue
) -> None:
    first = post(client, tone_wav, "order-21")
    key = redis_key(queue.name, "order-21")
    record = json.loads(redis.get(key) or b"{}")
    # As if the first request were still between its claim and its enqueue.
    record.update(state="pending", job_id="00000000-0000-4000-8000-00000000dead")
    redis.set(key, json.dumps(record))
    busy = post(client, tone_wav, "order-21")
    assert busy.status_code == 409
    assert busy.headers["retry-after"] == "1"
    assert first.status_code == 200


def test_a_replay_answers_the_jobs_status_now(
    client: TestClient, tone_wav: Path, queue: Queue
) -> None:
    first = post(client, tone_wav, "order-23").json()["job_id"]
    job = Job.fetch(first, connection=queue.connection, serializer=queue.serializer)
    job.set_status(JobStatus.FINISHED)
    again = post(client, tone_wav, "order-23")
    assert again.status_code == 200
    assert again.json() == {"job_id": first, "status": "finished"}


def test_looking_up_a_job_being_enqueued_leaves_it_on_the_queue(
    client: TestClient, tone_wav: Path, redis: fakeredis.FakeRedis, queue: Queue
) -> None:
    """A retry that looks while the first request's id is listed but its hash not yet readable
    (how a lookup can interleave with the enqueue's transaction) must not unlist it."""
    assert post(client, tone_wav, "order-24").status_code == 200
    key = redis_key(queue.name, "order-24")
    record = json.loads(redis.get(key) or b"{}")
    being_enqueued = "00000000-0000-4000-8000-00000000beef"
    record.update(state="pending", job_id=being_enqueued)
    redis.set(key, json.dumps(record))
    jobs_queue(queue).push_job_id(being_enqueued)
    assert post(client, tone_wav, "order-24").status_code == 409
    assert being_enqueued in jobs_queue(queue).get_job_ids()


def test_a_key_whose_job_expired_makes_a_new_job(
    client: TestClient, tone_wav: Path, queue: Queue
) -> None:
    first = post(client, tone_wav, "order-22").json()["job_id"]
    load_job(queue, first).delete()  # type: ignore[union-attr]
    second = post(client, tone_wav, "order-22")
    assert second.status_code == 200
    assert second.json()["job_id"] != first


def test_racing_claims_let_one_request_through() -> None:
    redis = fakeredis.FakeRedis()
    fingerprint = Fingerprint.of("ab" * 32, {"engine": "whisperx"})
    won = claim(redis, "k", "job-1", fingerprint, 60, lambda _job: None)
    assert isinstance(won, Claim)
    with pytest.raises(ServiceError) as busy:
        claim(redis, "k", "job-2", fingerprint, 60, lambda _job: None)
    assert (busy.value.status_code, busy.value.headers) == (409, {"Retry-After": "1"})
    replay = claim(
        redis, "k", "job-3", fingerprint, 60, lambda job: "started" if job == "job-1" else None
    )
    assert replay == Replay("job-1", "started")


def test_fingerprint_ignores_field_order_and_blank_fields() -> None:
    one = Fingerprint.of("x", {"engine": "whisperx", "language": "en", "model": " "})
    two = Fingerprint.of("x", {"language": "en", "engine": "whisperx"})
    assert one == two
