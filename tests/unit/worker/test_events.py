"""What a job publishes on its event stream, on fakeredis with the real worker and a fake engine."""

from __future__ import annotations

from pathlib import Path

from rq import Queue

from api.jobs.cancel import cancel_job, erase_job
from common.contract import Keys, Progress, load_job
from common.events import EventKind, EventPublisher
from common.transcript import Segment, Transcript
from tests.fakes import enqueue_audio, enqueue_path, published_events, work
from worker.engines.fake import FAILING_MODEL
from worker.runtime import Runtime
from worker.tasks import LiveSegments, ProgressReporter


def test_a_job_streams_its_start_progress_segments_and_end(
    runtime: Runtime, queue: Queue, tone_wav: Path
) -> None:
    job_id = enqueue_audio(queue, runtime.settings, tone_wav).id
    work(queue, runtime)
    events = published_events(queue, job_id)
    assert events[0].kind == EventKind.STATUS
    assert events[0].data["status"] == "started"
    assert events[-1].terminal
    assert events[-1].data["status"] == "finished"
    assert events[-1].data["progress"] == {"stage": "done", "percent": 100.0}
    assert "result" not in events[-1].data
    assert [event for event in events if event.terminal] == [events[-1]]
    stages = [event.data["stage"] for event in events if event.kind == EventKind.PROGRESS]
    assert stages == ["loading_model", "decoding", "transcribing", "transcribing", "done"]
    segments = [event.data for event in events if event.kind == EventKind.SEGMENT]
    job = load_job(queue, job_id)
    assert job is not None
    result = job.return_value()
    assert result is not None
    assert segments == result["segments"]
    ttl = queue.connection.ttl(Keys(queue.name).events(job_id))
    assert abs(ttl - queue.connection.ttl(job.key)) <= 1  # it expires with the job


def test_a_failed_job_ends_its_stream_with_the_error(
    runtime: Runtime, queue: Queue, tone_wav: Path
) -> None:
    job_id = enqueue_audio(queue, runtime.settings, tone_wav, model=FAILING_MODEL).id
    work(queue, runtime)
    last = published_events(queue, job_id)[-1]
    assert last.terminal
    assert last.data["status"] == "failed"
    assert last.data["error"] == f"fake engine cannot load model {FAILING_MODEL!r}"


def test_a_queued_job_canceled_has_only_its_end_and_erasing_deletes_the_stream(
    runtime: Runtime, queue: Queue, tmp_path: Path
) -> None:
    job = enqueue_path(queue, runtime.settings, tmp_path / "a.wav")
    assert cancel_job(runtime.settings, job) == "canceled"
    [event] = published_events(queue, job.id)
    assert event.terminal
    assert event.data["status"] == "canceled"
    erase_job(runtime.settings, job)
    assert not queue.connection.exists(Keys(queue.name).events(job.id))


def test_progress_events_come_on_a_new_stage_or_a_whole_percent_more(
    runtime: Runtime, queue: Queue, tmp_path: Path
) -> None:
    job = enqueue_path(queue, runtime.settings, tmp_path / "a.wav")
    reporter = ProgressReporter(job, events=EventPublisher.for_job(job))
    reporter("decoding", None)
    reporter("decoding", None)
    for step in range(1001):
        reporter("transcribing", step / 10)
    reporter("aligning", 0.0)
    reporter.finish("en")
    progress = [Progress.model_validate(event.data) for event in published_events(queue, job.id)]
    assert progress[0] == Progress(stage="decoding")
    transcribing = [item.percent for item in progress if item.stage == "transcribing"]
    assert transcribing == [float(percent) for percent in range(101)]
    assert progress[-2:] == [
        Progress(stage="aligning", percent=0.0),
        Progress(stage="done", percent=100.0),
    ]


def segment(index: int) -> Segment:
    return Segment(id=index, start=float(index), end=index + 1.0, text=f"s{index}")


def test_segments_not_handed_over_live_are_published_at_the_end(
    runtime: Runtime, queue: Queue, tmp_path: Path
) -> None:
    job = enqueue_path(queue, runtime.settings, tmp_path / "a.wav")
    live = LiveSegments(EventPublisher.for_job(job))
    live(segment(0))
    transcript = Transcript(
        engine="whisperx",
        model="tiny.en",
        language="en",
        duration=3.0,
        text="s0 s1 s2",
        segments=[segment(0), segment(1), segment(2)],
    )
    live.complete(transcript)
    published = [Segment.model_validate(event.data) for event in published_events(queue, job.id)]
    assert published == transcript.segments
    assert live.published == 3
