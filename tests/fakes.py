"""Fakes shared by the unit tier: the fake engine's runtime, an in-process worker, queued jobs."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from rq import Queue
from rq.job import Job

from api.jobs.queue import enqueue_transcription
from common.catalog import EngineName, Route
from common.contract import JobRequest, Keys
from common.events import JobEvent, event_of
from common.fairness import waiting
from common.routing import family_queue_names, route_queue
from config import Settings
from worker.engines.fake import FakeEngine, slow_model
from worker.routing import served_routes, worker_queues
from worker.rq_worker import TranscriptionWorker
from worker.runtime import Runtime

FAKE_ENGINES = {engine.value: "worker.engines.fake:FakeEngine" for engine in EngineName}
"""An engine registry in which every engine name is the fake engine."""


def fake_runtime(settings: Settings) -> Runtime:
    """A worker runtime on the CPU whose engines are all the fake one (load count reset)."""
    settings.device = "cpu"
    FakeEngine.loads = 0
    return Runtime.from_settings(settings, engines=FAKE_ENGINES)


def work(queue: Queue, runtime: Runtime) -> None:
    """Run every queued job in this thread, as `python -m worker` would, then return.

    `queue` is QUEUE_NAME's; the worker listens to the route queues its settings serve, and to
    every other route queue that has had jobs, since the fake engine's own models (`broken`,
    `slow-N`) are no offered names.
    """
    queues = worker_queues(queue, served_routes(runtime.settings))
    listened = {each.name for each in queues}
    queues[-1:-1] = [
        Queue(name, connection=queue.connection, serializer=queue.serializer)
        for name in family_queue_names(queue.connection, queue.name)
        if name not in listened
    ]
    worker = TranscriptionWorker(
        queues, connection=queue.connection, serializer=queue.serializer, runtime=runtime
    )
    worker.work(burst=True)


def jobs_queue(queue: Queue, model: str = "tiny.en", engine: str = "whisperx") -> Queue:
    """The route queue beside QUEUE_NAME's `queue` where jobs for `engine/model` wait (the
    helpers here enqueue whisperx jobs)."""
    return route_queue(queue, Route(EngineName(engine), model))


def queued_jobs(queue: Queue) -> int:
    """Jobs waiting on every route queue beside QUEUE_NAME's `queue`, fair-turn lists included."""
    total = 0
    for name in family_queue_names(queue.connection, queue.name):
        each = Queue(name, connection=queue.connection, serializer=queue.serializer)
        total += each.count + waiting(queue.connection, name)
    return total


def enqueue_audio(
    queue: Queue,
    settings: Settings,
    audio: Path,
    *,
    model: str = "tiny.en",
    sleep_s: float = 0.0,
    callback_url: str | None = None,
) -> Job:
    """Copy `audio` into the uploads folder and enqueue a whisperx job for it, as the API would.

    `sleep_s` makes the fake engine take that long (for cancel and stop tests).
    """
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    job_id = str(uuid.uuid4())
    target = settings.upload_dir / f"{job_id}{audio.suffix}"
    shutil.copy(audio, target)
    model = slow_model(sleep_s) if sleep_s else model
    return enqueue_path(queue, settings, target, job_id, model=model, callback_url=callback_url)


def enqueue_path(
    queue: Queue,
    settings: Settings,
    audio_path: Path,
    job_id: str | None = None,
    *,
    model: str = "tiny.en",
    callback_url: str | None = None,
    owner: str | None = None,
) -> Job:
    """Enqueue a whisperx job for the file at `audio_path` (which need not exist), as the API
    key `owner` when given."""
    request = JobRequest(audio_path=str(audio_path), engine=EngineName.WHISPERX, model=model)
    return enqueue_transcription(
        queue,
        settings,
        job_id=job_id or str(uuid.uuid4()),
        request=request,
        duration_s=1.0,
        callback_url=callback_url,
        owner=owner,
    )


def published_events(queue: Queue, job_id: str) -> list[JobEvent]:
    """The job's event stream as stored, oldest first."""
    entries = queue.connection.xrange(Keys(queue.name).events(job_id)) or []
    return [event for event in (event_of(*entry) for entry in entries) if event is not None]
