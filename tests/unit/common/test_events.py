"""Publishing job events on fakeredis: the entry's shape, bounds, expiry, and Redis outages."""

from __future__ import annotations

import logging
from pathlib import Path

import fakeredis
import pytest
from rq import Queue

from common import events
from common.contract import Keys, Progress
from common.events import (
    EventKind,
    EventPublisher,
    event_of,
    id_before,
    parse_entry_id,
    publish_end,
)
from common.transcript import Segment
from config import Settings
from tests.fakes import enqueue_path, published_events


def test_an_entry_is_a_kind_and_json_data_under_its_stream_id(
    queue: Queue, settings: Settings, tmp_path: Path
) -> None:
    job = enqueue_path(queue, settings, tmp_path / "a.wav")
    publisher = EventPublisher.for_job(job)
    segment = Segment(id=0, start=0.5, end=1.5, text="héllo")
    entry_id = publisher.publish(EventKind.SEGMENT, segment)
    assert entry_id is not None
    [event] = published_events(queue, job.id)
    assert event.id == entry_id
    assert event.kind == EventKind.SEGMENT
    assert Segment.model_validate(event.data) == segment
    assert '"text":"héllo"' in event.data_json()
    assert abs(event.published_at - int(entry_id.split("-")[0]) / 1000) < 1e-9
    assert not event.terminal


def test_a_running_jobs_stream_expires_after_its_timeout_and_result_ttl(
    queue: Queue, settings: Settings, tmp_path: Path
) -> None:
    settings.result_ttl_s, settings.failure_ttl_s = 3600, 7200
    job = enqueue_path(queue, settings, tmp_path / "a.wav")
    EventPublisher.for_job(job).publish(EventKind.PROGRESS, Progress(stage="decoding"))
    ttl = queue.connection.ttl(Keys(queue.name).events(job.id))
    assert job.timeout is not None
    assert job.timeout + 7200 - 5 <= ttl <= job.timeout + 7200


def test_the_stream_is_bounded(
    queue: Queue, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "STREAM_MAXLEN", 10)
    job = enqueue_path(queue, settings, tmp_path / "a.wav")
    publisher = EventPublisher.for_job(job)
    for count in range(1000):
        publisher.publish(EventKind.PROGRESS, Progress(stage="transcribing", percent=count / 10))
    kept = published_events(queue, job.id)
    # Trimming is approximate: Redis trims whole nodes (100 entries by default) past the bound.
    assert 10 <= len(kept) <= 110
    assert kept[-1].data["percent"] == 99.9


def test_a_new_attempt_empties_the_stream_and_ids_keep_growing(
    queue: Queue, settings: Settings, tmp_path: Path
) -> None:
    job = enqueue_path(queue, settings, tmp_path / "a.wav")
    publisher = EventPublisher.for_job(job)
    first = publisher.publish(EventKind.SEGMENT, Segment(id=0, start=0, end=1, text="old"))
    started = publisher.start_attempt(job)
    assert first is not None
    assert started is not None
    assert parse_entry_id(started) > parse_entry_id(first)  # type: ignore[operator]
    [event] = published_events(queue, job.id)
    assert event.kind == EventKind.STATUS
    assert event.data["job_id"] == job.id
    assert "result" not in event.data


def test_the_end_is_published_once_and_expires_with_the_jobs_record(
    queue: Queue, settings: Settings, tmp_path: Path
) -> None:
    job = enqueue_path(queue, settings, tmp_path / "a.wav")
    job.cancel()
    queue.connection.expire(job.key, 120)
    publish_end(job)
    publish_end(job)  # end_job may run twice for a job
    [event] = published_events(queue, job.id)
    assert event.terminal
    assert event.data["status"] == "canceled"
    assert 110 <= queue.connection.ttl(Keys(queue.name).events(job.id)) <= 120
    queue.connection.persist(job.key)
    queue.connection.xadd(Keys(queue.name).events(job.id), {"kind": "progress", "data": "{}"})
    publish_end(job)
    assert queue.connection.ttl(Keys(queue.name).events(job.id)) == -1  # kept as long as it is


def test_the_end_of_a_job_gone_meanwhile_removes_its_stream(
    queue: Queue, settings: Settings, tmp_path: Path
) -> None:
    job = enqueue_path(queue, settings, tmp_path / "a.wav")
    publisher = EventPublisher.for_job(job)
    publisher.publish(EventKind.PROGRESS, Progress(stage="decoding"))
    job.delete()
    publish_end(job)
    assert not queue.connection.exists(Keys(queue.name).events(job.id))


def test_publishing_is_advisory_when_redis_is_down(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = fakeredis.FakeServer()
    queue = Queue(settings.queue_name, connection=fakeredis.FakeRedis(server=server))
    job = enqueue_path(queue, settings, tmp_path / "a.wav")
    publisher = EventPublisher.for_job(job)
    server.connected = False
    with caplog.at_level(logging.WARNING):
        assert publisher.publish(EventKind.PROGRESS, Progress(stage="decoding")) is None
        assert publisher.start_attempt(job) is None
        publish_end(job)
    assert "could not publish" in caplog.text


def test_entries_that_are_not_events_are_skipped() -> None:
    assert event_of(b"1-0", {b"kind": b"segment", b"data": b"not json"}) is None
    assert event_of(b"1-0", {b"kind": b"gossip", b"data": b"{}"}) is None
    assert event_of(b"1-0", {b"data": b"{}"}) is None
    assert event_of(None, None) is None
    status = event_of("1-0", {"kind": "status", "data": '{"status": "finished"}'})
    assert status is not None
    assert status.terminal


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("1764634000123-0", (1764634000123, 0)),
        ("0-0", (0, 0)),
        ("18446744073709551615-18446744073709551615", (2**64 - 1, 2**64 - 1)),
        ("18446744073709551616-0", None),
        ("1764634000123", None),
        ("-1-0", None),
        ("1-0 ", None),
        ("abc-def", None),
        ("", None),
    ],
)
def test_entry_ids_are_checked(text: str, parsed: tuple[int, int] | None) -> None:
    assert parse_entry_id(text) == parsed


def test_the_id_before_an_entry_reads_from_that_entry_on() -> None:
    assert id_before("5-3") == "5-2"
    assert id_before("5-0") == f"4-{2**64 - 1}"
    assert id_before("0-0") == "0-0"
    with pytest.raises(ValueError, match="not a stream entry id"):
        id_before("x")
