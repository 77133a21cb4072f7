"""The jobs resource on fakeredis: listing, paging, filters, cancel, queue position and ETA."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from rq import Queue
from rq.job import Job
from rq.job import JobStatus as RQStatus

from common.cancellation import cancel_requested
from common.contract import Keys, StageProgress, load_job, meta_of, store_meta
from common.job_status import describe_job
from config import Settings
from tests.fakes import enqueue_path, jobs_queue
from tests.unit.conftest import uploads_left


def enqueue(queue: Queue, settings: Settings, callback_url: str | None = None) -> Job:
    """A queued job with a real (empty) upload file, as the upload route leaves it."""
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    job_id = str(uuid.uuid4())
    path = settings.upload_dir / f"{job_id}.wav"
    path.write_bytes(b"")
    return enqueue_path(queue, settings, path, job_id, callback_url=callback_url)


def submit_many(queue: Queue, settings: Settings, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        ids.append(enqueue(queue, settings).id)
        time.sleep(0.002)  # distinct creation times, as real submissions have
    return ids


def test_jobs_are_listed_newest_first_page_by_page(
    client: TestClient, queue: Queue, settings: Settings
) -> None:
    ids = submit_many(queue, settings, 5)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        body = client.get("/jobs", params=params).json()
        pages += 1
        assert len(body["jobs"]) <= 2
        assert all(item["result"] is None for item in body["jobs"])
        seen += [item["job_id"] for item in body["jobs"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert pages == 3


def test_new_jobs_do_not_shift_a_cursor(
    client: TestClient, queue: Queue, settings: Settings
) -> None:
    ids = submit_many(queue, settings, 3)
    first = client.get("/jobs", params={"limit": 2}).json()
    submit_many(queue, settings, 2)
    rest = client.get("/jobs", params={"limit": 10, "cursor": first["next_cursor"]}).json()
    assert [item["job_id"] for item in rest["jobs"]] == [ids[0]]
    assert rest["next_cursor"] is None


def test_status_filter(client: TestClient, queue: Queue, settings: Settings) -> None:
    ids = submit_many(queue, settings, 4)
    failed = load_job(queue, ids[1])
    assert failed is not None
    failed.set_status(RQStatus.FAILED)
    assert client.delete(f"/jobs/{ids[2]}").status_code == 200
    by_status = {
        status: [
            item["job_id"] for item in client.get("/jobs", params={"status": status}).json()["jobs"]
        ]
        for status in ("queued", "failed", "canceled", "finished")
    }
    assert by_status == {
        "queued": [ids[3], ids[0]],
        "failed": [ids[1]],
        "canceled": [ids[2]],
        "finished": [],
    }


@pytest.mark.parametrize(
    "params",
    [{"status": "done"}, {"limit": 0}, {"limit": 101}, {"cursor": "abc"}, {"cursor": "1-x" * 10}],
)
def test_bad_listing_parameters_are_422(client: TestClient, params: dict[str, str | int]) -> None:
    assert client.get("/jobs", params=params).status_code == 422


def test_expired_jobs_leave_the_listing_and_the_index(
    client: TestClient, queue: Queue, settings: Settings
) -> None:
    ids = submit_many(queue, settings, 3)
    queue.connection.delete(Job.key_for(ids[1]))
    listed = [item["job_id"] for item in client.get("/jobs").json()["jobs"]]
    assert listed == [ids[2], ids[0]]
    assert queue.connection.zscore(Keys(queue.name).index, ids[1]) is None


def test_job_record_is_the_status_record(
    client: TestClient, queue: Queue, settings: Settings
) -> None:
    job = enqueue(queue, settings)
    assert client.get(f"/jobs/{job.id}").json() == client.get(f"/status/{job.id}").json()
    assert client.get(f"/jobs/{uuid.uuid4()}").status_code == 404


def test_queued_jobs_show_their_place(client: TestClient, queue: Queue, settings: Settings) -> None:
    ids = submit_many(queue, settings, 3)
    places = [client.get(f"/jobs/{job_id}").json()["queue_position"] for job_id in ids]
    assert places == [1, 2, 3]
    client.delete(f"/jobs/{ids[0]}")
    assert [client.get(f"/jobs/{job_id}").json()["queue_position"] for job_id in ids[1:]] == [1, 2]


def test_running_job_shows_an_eta_from_its_stage_progress(queue: Queue, settings: Settings) -> None:
    job = enqueue(queue, settings)
    job.set_status(RQStatus.STARTED)
    meta = meta_of(job)
    meta.progress = StageProgress(stage="transcribing", percent=25.0, stage_started_at=1000.0)
    store_meta(job, meta)
    fetched = load_job(queue, job.id)
    assert fetched is not None
    status = describe_job(fetched, now=1010.0)
    assert status.eta_s == pytest.approx(30.0)
    assert status.progress is not None
    assert status.progress.model_dump() == {"stage": "transcribing", "percent": 25.0}
    meta.progress = StageProgress(stage="transcribing", percent=0.5, stage_started_at=1000.0)
    store_meta(fetched, meta, save=False)
    assert describe_job(fetched, now=1010.0).eta_s is None


def test_cancel_a_queued_job(client: TestClient, queue: Queue, settings: Settings) -> None:
    job = enqueue(queue, settings)
    assert uploads_left(settings)
    response = client.delete(f"/jobs/{job.id}")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "canceled"
    assert body["queue_position"] is None
    assert uploads_left(settings) == []
    assert job.id not in jobs_queue(queue).job_ids
    assert client.get(f"/status/{job.id}").json()["status"] == "canceled"
    assert 0 < queue.connection.ttl(job.key) <= settings.failure_ttl_s
    assert client.delete(f"/jobs/{job.id}").status_code == 204  # ended now: erased
    assert client.get(f"/status/{job.id}").status_code == 404


def test_cancel_a_running_job_asks_its_worker(
    client: TestClient, queue: Queue, settings: Settings
) -> None:
    settings.cancel_wait_s = 0
    job = enqueue(queue, settings)
    queue.remove(job.id)
    job.set_status(RQStatus.STARTED)
    response = client.delete(f"/jobs/{job.id}")
    assert response.status_code == 202
    assert response.json()["status"] == "started"
    assert cancel_requested(queue.connection, job)


@pytest.mark.parametrize("ended", [RQStatus.FINISHED, RQStatus.FAILED, RQStatus.STOPPED])
def test_deleting_an_ended_job_erases_it_for_good(
    client: TestClient, queue: Queue, settings: Settings, ended: RQStatus
) -> None:
    settings.webhook_secret = SecretStr("s")
    job = enqueue(queue, settings, callback_url="https://hooks.example.com/x")
    queue.remove(job.id)
    job.set_status(ended)
    keys = Keys(queue.name)
    queue.connection.rpush(keys.ended(job.id), b"ended")
    queue.connection.zadd(keys.webhooks_due, {job.id: 1.0})
    response = client.delete(f"/jobs/{job.id}")
    assert response.status_code == 204
    assert response.content == b""
    assert client.get(f"/status/{job.id}").status_code == 404
    assert client.get(f"/result/{job.id}").status_code == 404
    assert client.delete(f"/jobs/{job.id}").status_code == 404
    assert client.get("/jobs").json()["jobs"] == []
    assert uploads_left(settings) == []
    left = [key for key in queue.connection.keys("*") if job.id in str(key)]
    assert left == []
    assert queue.connection.zscore(keys.webhooks_due, job.id) is None
    assert queue.connection.zscore(keys.index, job.id) is None


def test_cancel_unknown_job_is_404(client: TestClient) -> None:
    assert client.delete(f"/jobs/{uuid.uuid4()}").status_code == 404
    assert client.delete("/jobs/not-a-job").status_code == 404


def test_canceling_a_queued_job_schedules_its_webhook(
    client: TestClient, queue: Queue, settings: Settings
) -> None:
    settings.webhook_secret = SecretStr("k")
    job = enqueue(queue, settings, callback_url="https://hooks.example.com/done")
    plain = enqueue(queue, settings)
    before = client.get(f"/jobs/{job.id}").json()["webhook"]
    assert before == {
        "url": "https://hooks.example.com/done",
        "state": "pending",
        "attempts": 0,
        "last_attempt_at": None,
        "last_status_code": None,
        "last_error": None,
        "next_attempt_at": None,
        "delivered_at": None,
    }
    client.delete(f"/jobs/{job.id}")
    client.delete(f"/jobs/{plain.id}")
    due = queue.connection.zrange(Keys(queue.name).webhooks_due, 0, -1)
    assert due == [job.id.encode()]
    assert client.get(f"/jobs/{plain.id}").json()["webhook"] is None


def test_upload_path_outside_the_folder_is_never_deleted(
    client: TestClient, queue: Queue, settings: Settings, tmp_path: Path
) -> None:
    outside = tmp_path / "precious.wav"
    outside.write_bytes(b"keep")
    job = enqueue_path(queue, settings, outside)
    assert client.delete(f"/jobs/{job.id}").status_code == 200
    assert outside.read_bytes() == b"keep"
