"""Following a job's events without holding a thread: a replay at connect, then XREAD BLOCK."""

# Every wait is an XREAD BLOCK on the app's asyncio Redis connection, bounded by IDLE_S; an idle
# wait yields None, so the caller can send a keep-alive, and checks that the job still exists and
# has not ended without its terminal entry (publishing is advisory): the job's record is the
# truth, the stream is news about it.

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from redis.asyncio import Redis as AsyncRedis
from rq import Queue
from rq.job import Job
from starlette.concurrency import run_in_threadpool

from api.jobs.long_poll import read_status
from common.contract import TERMINAL, Keys, public_status_of
from common.events import EventKind, JobEvent, entry_id_of, event_of, id_before

IDLE_S = 10.0
"""Longest wait for news before a keep-alive: under FastAPI's own 15 s ping and the minute
after which proxies commonly cut a silent connection."""

READ_COUNT = 500
"""Entries read from Redis at a time."""


def _entries(reply: Any) -> Sequence[tuple[Any, Any]]:
    """The (id, fields) entries of an XREAD reply on one stream (RESP2, redis-py's default)."""
    return list(reply[0][1]) if reply else []


class JobEventReader:
    """Reads job event streams on an asyncio Redis connection whose read timeout outlasts
    `idle_s`; `queue` (synchronous) serves the status reads that need rq."""

    def __init__(self, connection: AsyncRedis, queue: Queue, idle_s: float = IDLE_S) -> None:
        self._connection = connection
        self._queue = queue
        self._keys = Keys(queue.name)
        self._idle_ms = max(1, int(idle_s * 1000))

    async def events(
        self, job_id: str, last_event_id: str | None
    ) -> AsyncIterator[JobEvent | None]:
        """A job's events for one client; None after each IDLE_S without news.

        With `last_event_id`: every entry after it, then the live ones. Without: first the
        job's status now, then the segments already published (the transcript so far), then
        every entry that comes after, live. The status's id is where a reconnect resumes
        without losing a segment: just before the first segment replayed, else the stream's
        newest entry (`0-0` for none). A job that has ended gets its status and its segments,
        then the end. Otherwise the events end with the terminal status. A job that goes away
        (erased, expired) ends them too.
        """
        if last_event_id is not None:
            async for event in self.follow(job_id, last_event_id):
                yield event
            return
        key = self._keys.events(job_id)
        newest = await self._connection.xrevrange(key, count=1)
        last_id = entry_id_of(newest[0][0]) if newest else "0-0"
        status = await run_in_threadpool(read_status, self._queue, job_id)
        if status is None:
            return
        ended = status.status in TERMINAL
        segments = await self._segments(key, "+" if ended else last_id)
        yield JobEvent(
            id=id_before(segments[0].id) if segments else last_id,
            kind=EventKind.STATUS,
            data=status.model_dump(mode="json", exclude={"result"}),
        )
        for segment in segments:
            yield segment
        if not ended:
            async for event in self.follow(job_id, last_id):
                yield event

    async def follow(self, job_id: str, after_id: str) -> AsyncIterator[JobEvent | None]:
        """Every entry after `after_id` as it comes, up to the terminal status; None after
        each IDLE_S without news. A job found ended without a terminal entry gets one made from
        its record (its id: the last entry read); a job found gone ends the events."""
        key = self._keys.events(job_id)
        last_id = after_id
        block_ms: int | None = None  # the first read only looks: an empty stream is then checked
        while True:
            reply = await self._connection.xread({key: last_id}, count=READ_COUNT, block=block_ms)
            entries = _entries(reply)
            for entry_id, fields in entries:
                last_id = entry_id_of(entry_id)
                event = event_of(entry_id, fields)
                if event is None:
                    continue
                yield event
                if event.terminal:
                    return
            if entries:
                block_ms = self._idle_ms
                continue
            state = await self._connection.hget(Job.key_for(job_id), "status")
            if state is None:
                return  # erased or expired: its stream went with it
            if public_status_of(_text(state)) in TERMINAL:
                async for event in self._ended_without_entry(job_id, key, last_id):
                    yield event
                return
            if block_ms is not None:
                yield None
            block_ms = self._idle_ms

    async def _ended_without_entry(
        self, job_id: str, key: str, last_id: str
    ) -> AsyncIterator[JobEvent]:
        """For a job whose record says it has ended: the entries that came meanwhile, up to its
        terminal status, else a terminal status made from the record."""
        while entries := _entries(await self._connection.xread({key: last_id}, count=READ_COUNT)):
            for entry_id, fields in entries:
                last_id = entry_id_of(entry_id)
                event = event_of(entry_id, fields)
                if event is None:
                    continue
                yield event
                if event.terminal:
                    return
        status = await run_in_threadpool(read_status, self._queue, job_id)
        if status is not None:
            data = status.model_dump(mode="json", exclude={"result"})
            yield JobEvent(id=last_id, kind=EventKind.STATUS, data=data)

    async def _segments(self, key: str, up_to: str) -> list[JobEvent]:
        """The stream's segment events up to the entry id `up_to` (`+`: all)."""
        found: list[JobEvent] = []
        start = "-"
        while True:
            page = await self._connection.xrange(key, min=start, max=up_to, count=READ_COUNT)
            for entry_id, fields in page or []:
                event = event_of(entry_id, fields)
                if event is not None and event.kind == EventKind.SEGMENT:
                    found.append(event)
            if not page or len(page) < READ_COUNT:
                return found
            start = f"({entry_id_of(page[-1][0])}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
