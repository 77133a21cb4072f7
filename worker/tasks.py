"""The job function the API enqueues by name (`worker.tasks.transcribe`), and the job class
that hands it the runtime of the worker running it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError
from rq import get_current_job
from rq.job import Job

from common.contract import JobRequest, Progress, StageProgress, meta_of, store_meta
from common.events import EventKind, EventPublisher
from common.speakers import assign_speakers
from common.transcript import Segment, Transcript
from worker.audio import AudioDecodeError, audio_exists, audio_gone, decode_audio, fetched_audio
from worker.diarization.base import SpeakerCount
from worker.engines.base import Audio, ProgressCallback
from worker.runtime import Runtime
from worker.stopping import StopCheck

log = logging.getLogger(__name__)

PROGRESS_SAVE_INTERVAL_S = 0.5

PROGRESS_EVENT_STEP = 1.0
"""A progress event is published on a change of stage or of this many percent: at most about
100 entries per stage on a job's event stream."""


class ProgressReporter:
    """Writes (stage, percent) into the job's meta, at most every PROGRESS_SAVE_INTERVAL_S, and
    publishes it as a `progress` event on a change of stage or of PROGRESS_EVENT_STEP percent.

    Each report first runs `stop_check`, which raises to stop a canceled job; the meta also
    keeps when the stage began (`stage_started_at`, Unix seconds), for the API's ETA.
    """

    def __init__(
        self,
        job: Job | None,
        stop_check: Callable[[], None] | None = None,
        events: EventPublisher | None = None,
    ) -> None:
        self._job = job
        self._stop_check = stop_check
        self._events = events
        self._last_stage: str | None = None
        self._last_save = 0.0
        self._stage_started_at = 0.0
        self._published: Progress | None = None

    def __call__(self, stage: str, percent: float | None) -> None:
        if self._stop_check is not None:
            self._stop_check()
        if self._job is None:
            return
        clamped = None if percent is None else round(min(max(percent, 0.0), 100.0), 1)
        self._publish(Progress(stage=stage, percent=clamped))
        now = time.monotonic()
        if stage == self._last_stage and now - self._last_save < PROGRESS_SAVE_INTERVAL_S:
            return
        if stage != self._last_stage:
            self._stage_started_at = time.time()
        self._last_stage = stage
        self._last_save = now
        progress = StageProgress(
            stage=stage, percent=clamped, stage_started_at=self._stage_started_at
        )
        save_progress(self._job, progress)

    def finish(self, detected_language: str | None) -> None:
        """Store and publish the `done` stage, with the language the engine settled on."""
        if self._job is None:
            return
        done = StageProgress(stage="done", percent=100.0)
        self._publish(Progress(stage=done.stage, percent=done.percent))
        save_progress(self._job, done, detected_language)

    def _publish(self, progress: Progress) -> None:
        if self._events is None or not _is_news(self._published, progress):
            return
        self._published = progress
        self._events.publish(EventKind.PROGRESS, progress)


def _is_news(last: Progress | None, now: Progress) -> bool:
    """Whether `now` is worth an event after `last`: another stage, or PROGRESS_EVENT_STEP more."""
    if last is None or last.stage != now.stage:
        return True
    if now.percent is None:
        return False
    return last.percent is None or abs(now.percent - last.percent) >= PROGRESS_EVENT_STEP


class LiveSegments:
    """Publishes each segment the engine hands over as a `segment` event, and at the end any of
    the transcript's segments it did not hand over (an engine that could not stream them)."""

    def __init__(self, events: EventPublisher | None) -> None:
        self._events = events
        self.published = 0
        """How many segments were published, i.e. the id the next one should have."""

    def __call__(self, segment: Segment) -> None:
        if self._events is not None:
            self._events.publish(EventKind.SEGMENT, segment)
        self.published = max(self.published, segment.id + 1)

    def complete(self, transcript: Transcript) -> None:
        """Publish the transcript's segments from the first one not handed over live."""
        for segment in transcript.segments[self.published :]:
            self(segment)


def save_progress(job: Job, progress: StageProgress, detected_language: str | None = None) -> None:
    """Store the job's progress; it is advisory, so a Redis outage must not fail the job."""
    meta = meta_of(job)
    meta.progress = progress
    if detected_language is not None:
        meta.detected_language = detected_language
    try:
        store_meta(job, meta)
    except RedisError as error:
        log.warning("could not save the progress of job %s: %s", job.id, error)


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _queue_wait_s(job: Job | None) -> float | None:
    if job is None or job.enqueued_at is None:
        return None
    started = _as_utc(job.started_at or datetime.now(UTC))
    return max((started - _as_utc(job.enqueued_at)).total_seconds(), 0.0)


def transcribe(runtime: Runtime, **arguments: Any) -> dict[str, Any]:
    """Decode the upload, run it through the warm engine, return the transcript as JSON data.

    `arguments` are the job's request (`common.contract.JobRequest`), checked here once; the
    worker passes its `runtime`. The upload is deleted at the job's end, not here: a failure
    leaves it for a retry (an object's local copy goes as soon as it is decoded).
    """
    request = JobRequest.model_validate(arguments)
    job = get_current_job()
    stop_check = StopCheck(job)
    stop_check()  # canceled just as this worker took it: its upload may be gone already
    events = None
    if job is not None:
        events = EventPublisher.for_job(job)
        events.start_attempt(job)
    if not audio_exists(runtime.settings, request):
        raise AudioDecodeError(audio_gone(request))
    progress = ProgressReporter(job, stop_check, events)
    segments = LiveSegments(events)
    started = time.perf_counter()

    progress("loading_model", None)
    engine_impl, load_s = runtime.cache.get(runtime.spec(request.engine.value, request.model))

    progress("decoding", None)
    decode_started = time.perf_counter()
    with fetched_audio(runtime.settings, request) as local_audio:
        audio = decode_audio(
            local_audio,
            max_duration_s=runtime.settings.max_audio_duration_s,
            timeout_s=float(runtime.settings.job_timeout_max_s),
        )
    decode_s = time.perf_counter() - decode_started

    transcript = engine_impl.transcribe(audio, request.options, progress, segments)
    stop_check()  # a cancel that came during the last native call still wins
    segments.complete(transcript)
    if request.options.diarize:
        diarize(runtime, audio, request, transcript, progress)
        stop_check()
    transcript.timings.model_load_s = load_s
    transcript.timings.decode_s = decode_s
    transcript.timings.queue_wait_s = _queue_wait_s(job)
    transcript.timings.total_s = time.perf_counter() - started
    progress.finish(transcript.language)
    return transcript.model_dump(mode="json")


def diarize(
    runtime: Runtime,
    audio: Audio,
    request: JobRequest,
    transcript: Transcript,
    progress: ProgressCallback,
) -> None:
    """Label the transcript's segments and words with speakers (stage `diarizing`), from the
    worker's diarization backend (loaded on first use), and record which backend it was, why
    (in `notes`, when `auto` fell back) and how long it took (`timings.diarize_s`, its load
    included)."""
    progress("diarizing", None)
    started = time.perf_counter()
    loaded = runtime.diarizer.get()
    options = request.options
    count = SpeakerCount(options.num_speakers, options.min_speakers, options.max_speakers)
    turns = loaded.diarizer.diarize(audio, count)
    assign_speakers(transcript, turns)
    transcript.diarization_backend = loaded.name
    transcript.notes.extend(loaded.notes)
    if not turns:
        transcript.notes.append("diarization found no speech: no speaker labels")
    elif not any(segment.words for segment in transcript.segments):
        transcript.notes.append(
            "speakers labelled per segment only (no word timings): a segment in which the "
            "speaker changes carries the label of whoever speaks most of it"
        )
    transcript.timings.diarize_s = time.perf_counter() - started
    progress("diarizing", 100.0)


class TranscriptionJob(Job):
    """rq's Job, run with the runtime of the worker that took it: the task function receives
    that runtime as its first argument (see `worker.tasks.transcribe`)."""

    runtime: Runtime | None = None

    def _execute(self) -> Any:
        if self.runtime is None or self.func is None:
            raise RuntimeError(f"job {self.id} was run outside a TranscriptionWorker")
        return self.func(self.runtime, *self.args, **self.kwargs)
