"""The job function the API enqueues by name: `worker.tasks.transcribe`."""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rq import get_current_job
from rq.job import Job

from worker.audio import decode_audio
from worker.engines.base import TranscribeOptions
from worker.runtime import current_runtime

log = logging.getLogger(__name__)

PROGRESS_SAVE_INTERVAL_S = 0.5


class ProgressReporter:
    """Writes (stage, percent) into the job's meta, at most every PROGRESS_SAVE_INTERVAL_S."""

    def __init__(self, job: Job | None) -> None:
        self._job = job
        self._last_stage: str | None = None
        self._last_save = 0.0

    def __call__(self, stage: str, percent: float | None) -> None:
        if self._job is None:
            return
        now = time.monotonic()
        if stage == self._last_stage and now - self._last_save < PROGRESS_SAVE_INTERVAL_S:
            return
        self._last_stage = stage
        self._last_save = now
        self._job.meta["progress"] = {
            "stage": stage,
            "percent": None if percent is None else round(min(max(percent, 0.0), 100.0), 1),
        }
        self._job.save_meta()


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _queue_wait_s(job: Job | None) -> float | None:
    if job is None or job.enqueued_at is None:
        return None
    started = _as_utc(job.started_at or datetime.now(UTC))
    return max((started - _as_utc(job.enqueued_at)).total_seconds(), 0.0)


def transcribe(
    audio_path: str,
    engine: str,
    model: str,
    language: str | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Decode the upload, run it through the warm engine, return the transcript as JSON data.

    The upload is deleted once the transcript exists; failures leave it for a retry (the
    worker's failure handler deletes it when no attempt is left).
    """
    runtime = current_runtime()
    job = get_current_job()
    progress = ProgressReporter(job)
    started = time.perf_counter()

    progress("loading_model", None)
    engine_impl, load_s = runtime.cache.get(runtime.spec(engine, model))

    progress("decoding", None)
    decode_started = time.perf_counter()
    audio = decode_audio(
        Path(audio_path),
        max_duration_s=runtime.settings.max_audio_duration_s,
        timeout_s=float(runtime.settings.job_timeout_max_s),
    )
    decode_s = time.perf_counter() - decode_started

    transcript = engine_impl.transcribe(
        audio, TranscribeOptions(language=language, **(options or {})), progress
    )
    transcript.timings.model_load_s = load_s
    transcript.timings.decode_s = decode_s
    transcript.timings.queue_wait_s = _queue_wait_s(job)
    transcript.timings.total_s = time.perf_counter() - started
    if job is not None:
        job.meta["detected_language"] = transcript.language
        job.meta["progress"] = {"stage": "done", "percent": 100.0}
        job.save_meta()
    with contextlib.suppress(FileNotFoundError):
        Path(audio_path).unlink()
    return transcript.model_dump(mode="json")
