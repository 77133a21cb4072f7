"""Reading job event streams on fakeredis: the replay at connect, resuming, and the end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import fakeredis
import pytest
from rq import Queue
from rq.job import Job
from rq.job import JobStatus as RQStatus

from api.jobs.events import JobEventReader
from common.contract import Keys, Progress
from common.events import EventKind, EventPublisher, JobEvent, id_before, publish_end
from common.transcript import Segment
from config import Settings
from tests.fakes import enqueue_path

IDLE_S = 0.05


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def redis(server: fakeredis.FakeServer) -> fakeredis.FakeRedis:
    """The sync client, on the same server as the reader's asyncio one."""
    return fakeredis.FakeRedis(server=server)


@pytest.fixture
def reader(server: fakeredis.FakeServer, queue: Queue) -> JobEventReader:
    return JobEventReader(fakeredis.FakeAsyncRedis(server=server), queue, idle_s=IDLE_S)


@pytest.fixture
def job(queue: Queue, settings: Settings, tmp_path: Path) -> Job:
    """A job that has started."""
    job = enqueue_path(queue, settings, tmp_path / "a.wav")
    job.set_status(RQStatus.STARTED)
    return job


def segment(index: int) -> Segment:
    return Segment(id=index, start=float(index), end=index + 1.0, text=f"s{index}")


def finish(job: Job) -> None:
    job.set_status(RQStatus.FINISHED)
    publish_end(job)


async def collect(
    events: AsyncIterator[JobEvent | None],
    then: Callable[[list[JobEvent | None]], None] | None = None,
    after: int = 0,
    timeout_s: float = 10.0,
) -> list[JobEvent | None]:
    """Every item until the iterator ends; `then(items)` runs once `after` items came."""
    items: list[JobEvent | None] = []

    async def run() -> None:
        async for item in events:
            items.append(item)
            if then is not None and len(items) == after:
                then(items)

    await asyncio.wait_for(run(), timeout_s)
    return items


def kinds(items: Sequence[JobEvent | None]) -> list[str]:
    return ["idle" if item is None else item.kind.value for item in items]


def test_a_fresh_connection_gets_the_status_the_segments_so_far_then_live_ones(
    reader: JobEventReader, job: Job
) -> None:
    publisher = EventPublisher.for_job(job)
    publisher.publish(EventKind.PROGRESS, Progress(stage="transcribing", percent=10))
    first = publisher.publish(EventKind.SEGMENT, segment(0))
    publisher.publish(EventKind.PROGRESS, Progress(stage="transcribing", percent=50))
    publisher.publish(EventKind.SEGMENT, segment(1))
    assert first is not None

    def live(_: list[JobEvent | None]) -> None:
        publisher.publish(EventKind.SEGMENT, segment(2))
        finish(job)

    items = asyncio.run(collect(reader.events(job.id, None), live, after=3))
    events = [item for item in items if item is not None]
    assert kinds(events) == ["status", "segment", "segment", "segment", "status"]
    assert events[0].data["status"] == "started"
    assert events[0].id == id_before(first)  # a reconnect with it misses no segment
    assert [event.data["id"] for event in events if event.kind == EventKind.SEGMENT] == [0, 1, 2]
    assert events[-1].terminal


def test_last_event_id_resumes_exactly_after_that_event(reader: JobEventReader, job: Job) -> None:
    publisher = EventPublisher.for_job(job)
    ids = [publisher.publish(EventKind.SEGMENT, segment(index)) for index in range(3)]
    finish(job)
    assert ids[0] is not None
    items = asyncio.run(collect(reader.events(job.id, ids[0])))
    events = [item for item in items if item is not None]
    assert [event.id for event in events[:2]] == ids[1:]
    assert kinds(events) == ["segment", "segment", "status"]
    assert events[-1].terminal


def test_a_job_that_has_ended_gets_its_status_and_segments_then_the_end(
    reader: JobEventReader, job: Job
) -> None:
    publisher = EventPublisher.for_job(job)
    for index in range(2):
        publisher.publish(EventKind.SEGMENT, segment(index))
    finish(job)
    events = asyncio.run(collect(reader.events(job.id, None)))
    assert kinds(events) == ["status", "segment", "segment"]
    assert events[0] is not None
    assert events[0].terminal


def test_a_queued_job_without_a_stream_starts_at_zero_and_idles(
    reader: JobEventReader, queue: Queue, settings: Settings, tmp_path: Path
) -> None:
    job = enqueue_path(queue, settings, tmp_path / "b.wav")

    def end_after_two_idles(items: list[JobEvent | None]) -> None:
        assert items[1:] == [None, None]
        job.set_status(RQStatus.STARTED)
        finish(job)

    items = asyncio.run(collect(reader.events(job.id, None), end_after_two_idles, after=3))
    first, last = items[0], items[-1]
    assert first is not None
    assert (first.id, first.data["status"]) == ("0-0", "queued")
    assert last is not None
    assert last.terminal


def test_an_end_without_its_entry_is_told_from_the_record(reader: JobEventReader, job: Job) -> None:
    publisher = EventPublisher.for_job(job)
    last_id = publisher.publish(EventKind.SEGMENT, segment(0))
    job.set_status(RQStatus.FAILED)  # and its end was never published: Redis hiccuped
    events = asyncio.run(collect(reader.events(job.id, "0-0")))
    assert kinds(events) == ["segment", "status"]
    assert events[-1] is not None
    assert events[-1].terminal
    assert events[-1].data["status"] == "failed"
    assert events[-1].id == last_id


def test_a_job_erased_while_followed_ends_its_events(
    reader: JobEventReader, job: Job, queue: Queue
) -> None:
    EventPublisher.for_job(job).publish(EventKind.SEGMENT, segment(0))

    def erase(_: list[JobEvent | None]) -> None:
        job.delete()
        queue.connection.delete(Keys(queue.name).events(job.id))

    items = asyncio.run(collect(reader.events(job.id, None), erase, after=2))
    assert kinds(items) == ["status", "segment"]


def test_entries_that_are_not_events_are_skipped(
    reader: JobEventReader, job: Job, queue: Queue
) -> None:
    key = Keys(queue.name).events(job.id)
    queue.connection.xadd(key, {"kind": "gossip", "data": "{}"})
    EventPublisher.for_job(job).publish(EventKind.SEGMENT, segment(0))
    finish(job)
    events = asyncio.run(collect(reader.events(job.id, "0-0")))
    assert kinds(events) == ["segment", "status"]
