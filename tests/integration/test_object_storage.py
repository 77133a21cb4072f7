"""Uploads in a real S3 server (`weed server -s3`): the API streams them in, workers fetch them,
the job's end deletes them, the sweep removes leftovers; objects already in the store are
transcribed where they are (s3:// input) and never deleted."""

from __future__ import annotations

import io
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import httpx
import pytest
from rq import Queue
from rq.job import JobStatus
from rq.serializers import JSONSerializer

from bench.uploads import write_wav
from common.contract import load_job
from common.storage import StorageConfig, storage_of
from common.storage.s3 import S3Store, StagedObject
from config import Settings
from tests.audio import JFK, JFK_PHRASE, normalize
from tests.fakes import enqueue_path
from tests.services import (
    S3Server,
    Service,
    running_s3,
    running_service,
    submit,
    wait_for_job,
    wait_until,
)
from worker.maintenance import sweep_uploads

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
UPLOADS = "uploads"
RECORDINGS = "recordings"
MAX_FILE_SIZE = 16 * MIB


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with running_s3(tmp_path_factory.mktemp("s3"), (UPLOADS, RECORDINGS, "elsewhere")) as server:
        yield server


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, s3: S3Server) -> Iterator[Service]:
    """Redis, the API and one worker with uploads in S3 and s3:// input from `recordings`."""
    settings = s3.env(
        UPLOADS,
        S3_INPUT_BUCKETS=RECORDINGS,
        S3_PART_SIZE_MIB="5",
        MAX_FILE_SIZE=str(MAX_FILE_SIZE),
        WHISPERX_ALIGN="false",
    )
    root = tmp_path_factory.mktemp("deployment")
    with running_service(root, workers=1, env=settings) as service:
        yield service


def store_settings(s3: S3Server, tmp_path: Path, **extra: object) -> Settings:
    return Settings(
        storage_backend="s3",
        s3_endpoint_url=s3.endpoint_url,
        s3_bucket=UPLOADS,
        s3_prefix=f"test-{uuid.uuid4().hex[:8]}/",
        s3_access_key_id=s3.access_key,
        s3_secret_access_key=s3.secret_key,
        upload_dir=tmp_path / "uploads",
        **extra,  # type: ignore[arg-type]
    )


# --- The store on its own -----------------------------------------------------------------------


def test_an_upload_streams_into_parts_and_a_worker_reads_it_back(
    s3: S3Server, tmp_path: Path
) -> None:
    store = S3Store(StorageConfig.of(store_settings(s3, tmp_path, s3_part_size_mib=5)))
    content = bytes(range(256)) * (12 * MIB // 256) + b"ragged end"
    staged = store.stage()
    sink = staged.open_sink()
    for offset in range(0, len(content), MIB):
        sink.write(content[offset : offset + MIB])
    assert s3.keys(UPLOADS) == [f"(unfinished) {staged.key}"], "parts go up while it streams"
    sink.finish()

    ref = staged.commit("wav")
    assert ref == f"s3://{UPLOADS}/{staged.key}"
    assert store.holds(ref)
    assert store.exists(ref)
    with store.local_copy(ref, max_bytes=len(content)) as local:
        assert local.read_bytes() == content
        scratch = local.parent
    assert not scratch.exists(), "the scratch copy outlived its block"
    store.delete(ref)
    assert not store.exists(ref)
    assert s3.keys(UPLOADS) == []


def test_a_discarded_upload_leaves_nothing_in_the_bucket(s3: S3Server, tmp_path: Path) -> None:
    store = S3Store(StorageConfig.of(store_settings(s3, tmp_path, s3_part_size_mib=5)))
    cut_off = store.stage()
    cut_off.open_sink().write(b"x" * 6 * MIB)  # one part sent: a multipart upload exists
    finished = store.stage()
    sink = finished.open_sink()
    sink.write(b"small")
    sink.finish()
    assert len(s3.keys(UPLOADS)) == 2

    cut_off.discard()
    finished.discard()

    assert s3.keys(UPLOADS) == []


def test_the_sweep_removes_what_no_live_job_needs_in_the_bucket(
    s3: S3Server, tmp_path: Path
) -> None:
    settings = store_settings(s3, tmp_path, s3_part_size_mib=5, upload_orphan_age_s=600)
    store = storage_of(settings).uploads
    assert isinstance(store, S3Store)
    client = s3.client()
    queue = Queue(settings.queue_name, connection=fakeredis.FakeRedis(), serializer=JSONSerializer)

    def upload(job_id: str | None = None) -> str:
        staged = StagedObject(store, job_id)
        sink = staged.open_sink()
        sink.write(b"audio")
        sink.finish()
        return staged.key

    live = str(uuid.uuid4())
    enqueue_path(queue, settings, Path("unused"), live)
    ended = str(uuid.uuid4())
    enqueue_path(queue, settings, Path("unused"), ended)
    load_job(queue, ended).set_status(JobStatus.FINISHED)  # type: ignore[union-attr]
    live_key = upload(live)
    young_orphan = upload()
    removed = [upload(ended)]
    interrupted = store.stage()
    interrupted.open_sink().write(b"x" * 5 * MIB)  # a killed API's unfinished upload
    foreign = f"{settings.s3_prefix}README.operator"
    client.put_object(Bucket=UPLOADS, Key=foreign, Body=b"not an upload")

    now = time.time()
    assert sorted(sweep_uploads(queue, settings, now=now)) == sorted(removed)
    swept_later = sweep_uploads(queue, settings, now=now + 3600)

    assert sorted(swept_later) == sorted([interrupted.key, young_orphan])
    assert set(s3.keys(UPLOADS)) == {live_key, foreign}, "a live job's upload, or a foreign key"
    client.delete_object(Bucket=UPLOADS, Key=foreign)
    client.delete_object(Bucket=UPLOADS, Key=live_key)


# --- Through the service ------------------------------------------------------------------------


def test_a_job_goes_through_the_bucket_and_leaves_nothing_there(
    deployment: Service, s3: S3Server
) -> None:
    with deployment.client() as client:
        job_id = submit(client, JFK)
        status = wait_for_job(client, job_id, timeout_s=180)
    assert status["status"] == "finished", status["error"]
    assert JFK_PHRASE in normalize(status["result"]["text"])
    wait_until(lambda: s3.keys(UPLOADS) == [], 10, "the job's object to be deleted")
    assert not any(deployment.upload_dir.iterdir()), "an upload went to the local folder"


def test_a_large_upload_streams_in_parts_and_goes_with_its_cancel(
    deployment: Service, s3: S3Server, tmp_path: Path
) -> None:
    audio = write_wav(tmp_path / "noise.wav", 12 * MIB)
    worker = deployment.workers[0]
    worker.signal_group(signal.SIGSTOP)  # the job stays queued
    try:
        with deployment.client() as client:
            job_id = submit(client, audio)
            head = s3.client().head_object(Bucket=UPLOADS, Key=f"uploads/{job_id}")
            assert head["ContentLength"] == audio.stat().st_size
            canceled = client.delete(f"/jobs/{job_id}")
            assert canceled.json()["status"] == "canceled", canceled.text
    finally:
        worker.signal_group(signal.SIGCONT)
    assert s3.keys(UPLOADS) == [], "the canceled job's object outlived it"


def test_an_object_in_an_input_bucket_is_transcribed_where_it_is_and_kept(
    deployment: Service, s3: S3Server
) -> None:
    key = f"talks/{uuid.uuid4()}/jfk.flac"
    s3.client().upload_file(str(JFK), RECORDINGS, key)
    with deployment.client() as client:
        response = client.post(
            "/transcribe/url", json={"url": f"s3://{RECORDINGS}/{key}", "engine": "whisperx"}
        )
        assert response.status_code == 200, response.text
        status = wait_for_job(client, response.json()["job_id"], timeout_s=180)
    assert status["status"] == "finished", status["error"]
    assert JFK_PHRASE in normalize(status["result"]["text"])
    assert key in s3.keys(RECORDINGS), "the service deleted the client's own object"
    assert s3.keys(UPLOADS) == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (f"s3://elsewhere/{JFK.name}", "is not one this server reads"),
        (f"s3://{RECORDINGS}/talks/../secrets/jfk.flac", "'..' segment"),
        (f"s3://{RECORDINGS}/./jfk.flac", "'..' segment"),
        (f"s3://{RECORDINGS}//jfk.flac", "'..' segment"),
        (f"s3://{RECORDINGS}/", "names no object key"),
        (f"s3://{RECORDINGS}", "names no object key"),
        (f"s3://{UPLOADS}/uploads/{uuid.uuid4()}", "is not one this server reads"),
        (f"s3://{RECORDINGS}/missing/{uuid.uuid4()}.flac", "no such object"),
        ("s3://Not_A_Bucket/key.flac", "name a bucket"),
    ],
)
def test_s3_urls_the_server_does_not_take_are_a_422(
    deployment: Service, s3: S3Server, url: str, reason: str
) -> None:
    s3.client().upload_file(str(JFK), "elsewhere", JFK.name)
    with deployment.client() as client:
        response = client.post("/transcribe/url", json={"url": url, "engine": "whisperx"})
    assert response.status_code == 422, response.text
    assert reason in response.text
    assert response.json()["detail"][0]["loc"] == ["body", "url"]
    assert s3.keys(UPLOADS) == []


def test_an_input_object_past_max_file_size_is_a_413(deployment: Service, s3: S3Server) -> None:
    key = f"huge/{uuid.uuid4()}.wav"
    s3.client().put_object(Bucket=RECORDINGS, Key=key, Body=io.BytesIO(b"\0" * (MAX_FILE_SIZE + 1)))
    with deployment.client() as client:
        response = client.post(
            "/transcribe/url", json={"url": f"s3://{RECORDINGS}/{key}", "engine": "whisperx"}
        )
    assert response.status_code == 413, response.text
    assert key in s3.keys(RECORDINGS)


def test_an_input_object_deleted_before_its_job_runs_fails_the_job_cleanly(
    deployment: Service, s3: S3Server
) -> None:
    key = f"doomed/{uuid.uuid4()}.flac"
    client_s3 = s3.client()
    client_s3.upload_file(str(JFK), RECORDINGS, key)
    worker = deployment.workers[0]
    worker.signal_group(signal.SIGSTOP)  # nothing runs until the object is gone
    try:
        with deployment.client() as client:
            response = client.post(
                "/transcribe/url", json={"url": f"s3://{RECORDINGS}/{key}", "engine": "whisperx"}
            )
            assert response.status_code == 200, response.text
            client_s3.delete_object(Bucket=RECORDINGS, Key=key)
            worker.signal_group(signal.SIGCONT)
            status = wait_for_job(client, response.json()["job_id"], timeout_s=120)
    finally:
        worker.signal_group(signal.SIGCONT)
    assert status["status"] == "failed"
    assert status["error"] == (
        f"the audio object s3://{RECORDINGS}/{key} is gone (deleted since it was submitted)"
    )
    assert httpx.get(f"{deployment.url}/health").json()["workers"] == 1
