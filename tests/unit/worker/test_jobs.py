"""Queue logic of the worker on fakeredis with the fake engine: results, errors, retries."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from rq import Queue
from rq.job import JobStatus as RQStatus

from common.contract import load_job
from common.job_status import describe_job
from tests.fakes import enqueue_audio, jobs_queue, work
from worker.engines.fake import FAILING_MODEL, FakeEngine
from worker.maintenance import run_maintenance
from worker.rq_worker import TranscriptionWorker
from worker.runtime import Runtime


def test_job_finishes_with_transcript_and_upload_removed(
    runtime: Runtime, queue: Queue, tone_wav: Path
) -> None:
    job_id = enqueue_audio(queue, runtime.settings, tone_wav).id
    work(queue, runtime)
    job = load_job(queue, job_id)
    assert job is not None
    status = describe_job(job)
    assert status.status == "finished"
    assert status.result is not None
    assert status.result.duration == pytest.approx(1.0, abs=0.01)
    assert status.result.text == "w0"
    assert status.result.timings.queue_wait_s is not None
    assert status.progress is not None
    assert status.progress.stage == "done"
    assert list(runtime.settings.upload_dir.iterdir()) == []


def test_two_jobs_load_the_model_once(queue: Queue, runtime: Runtime, tone_wav: Path) -> None:
    first = enqueue_audio(queue, runtime.settings, tone_wav).id
    second = enqueue_audio(queue, runtime.settings, tone_wav).id
    work(queue, runtime)
    assert FakeEngine.loads == 1
    assert runtime.cache.loads == 1
    results = [describe_job(load_job(queue, job_id)).result for job_id in (first, second)]  # type: ignore[arg-type]
    assert all(result is not None for result in results)
    assert results[1] is not None
    assert results[1].timings.model_load_s == 0.0


def test_model_that_cannot_load_fails_without_retry(
    runtime: Runtime, queue: Queue, tone_wav: Path
) -> None:
    job_id = enqueue_audio(queue, runtime.settings, tone_wav, model=FAILING_MODEL).id
    work(queue, runtime)
    job = load_job(queue, job_id)
    assert job is not None
    status = describe_job(job)
    assert status.status == "failed"
    assert status.error == f"fake engine cannot load model {FAILING_MODEL!r}"
    assert "Traceback" not in status.error
    assert job.retries_left == 0
    assert list(runtime.settings.upload_dir.iterdir()) == []


def test_undecodable_audio_fails_with_a_readable_error(
    runtime: Runtime, queue: Queue, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"\x13" * 4096)
    job_id = enqueue_audio(queue, runtime.settings, garbage).id
    work(queue, runtime)
    status = describe_job(load_job(queue, job_id))  # type: ignore[arg-type]
    assert status.status == "failed"
    assert status.error is not None
    assert status.error.startswith("the audio could not be decoded")


def test_abandoned_job_is_retried_then_failed(
    runtime: Runtime, queue: Queue, tone_wav: Path
) -> None:
    job_id = enqueue_audio(queue, runtime.settings, tone_wav).id
    for attempt in range(runtime.settings.job_retries + 1):
        # A worker takes the job, registers it as started, and dies without a word.
        doomed = TranscriptionWorker(
            [jobs_queue(queue), queue],
            connection=queue.connection,
            serializer=queue.serializer,
            runtime=runtime,
        )
        jobs = jobs_queue(queue)
        dequeued = jobs.dequeue_any(
            [jobs], None, connection=queue.connection, serializer=queue.serializer
        )
        assert dequeued is not None, f"attempt {attempt}: the job was not requeued"
        doomed.prepare_execution(dequeued[0])
        doomed.prepare_job_execution(dequeued[0])
        run_maintenance(queue, runtime.settings)
        assert load_job(queue, job_id).get_status() == RQStatus.STARTED  # type: ignore[union-attr]
        later = time.time() + runtime.settings.heartbeat_ttl_s + 1
        run_maintenance(queue, runtime.settings, now=later)
    job = load_job(queue, job_id)
    assert job is not None
    assert job.get_status() == RQStatus.FAILED
    assert "stopped" in (describe_job(job).error or "")
    assert list(runtime.settings.upload_dir.iterdir()) == []
