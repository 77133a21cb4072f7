"""Each job's live events: a bounded Redis Stream of status, progress and segment entries."""

# The worker publishes `status` (started), `progress` and `segment` entries while a job runs;
# `common.job_end` publishes the terminal `status`; the API follows the stream (`api.jobs.events`).
# An entry has two fields, `kind` and `data` (JSON). Its stream id, `<ms>-<seq>` with Redis's
# clock at XADD, is the event's id, so a client resumes exactly after the last one it saw.
# Publishing is advisory, like the progress in a job's meta: a Redis error is logged, never raised.

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from redis import Redis
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT
from rq.exceptions import NoSuchJobError
from rq.job import Job

from common.contract import TERMINAL, Keys, public_status_of
from common.job_status import describe_job

log = logging.getLogger(__name__)

STREAM_MAXLEN = 20_000
"""Entries kept per job, approximately (Redis trims whole nodes): a job's segments fit many
times over; progress adds at most about 100 entries per stage."""

FALLBACK_TTL_S = 7 * 24 * 3600
"""Expiry of a running job's stream when its job carries no timeout or result TTL."""

ENTRY_ID = re.compile(r"^(?P<ms>[0-9]{1,20})-(?P<seq>[0-9]{1,20})$")
"""A stream entry id, as `Last-Event-ID` must spell it."""

_U64 = 2**64


class EventKind(StrEnum):
    """What an event reports."""

    STATUS = "status"
    """The job's status JSON without its result (`common.job_status.JobStatus`)."""
    PROGRESS = "progress"
    """Stage and percent (`common.contract.Progress`)."""
    SEGMENT = "segment"
    """One transcript segment as decoded (`common.transcript.Segment`)."""


class JobEvent(BaseModel):
    """One event of a job's stream."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Stream entry id `<ms>-<seq>`; Last-Event-ID resumes after it.")
    kind: EventKind
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        """Whether this is the status of a job that has ended: the stream's last event."""
        if self.kind != EventKind.STATUS:
            return False
        return public_status_of(str(self.data.get("status"))) in TERMINAL

    @property
    def published_at(self) -> float:
        """Unix seconds at which Redis stored the entry (the id's milliseconds)."""
        return int(self.id.split("-", 1)[0]) / 1000

    def data_json(self) -> str:
        """`data` as compact JSON, as an SSE `data:` line carries it."""
        return json.dumps(self.data, separators=(",", ":"), ensure_ascii=False)


def parse_entry_id(text: str) -> tuple[int, int] | None:
    """(milliseconds, sequence) of a stream entry id; None when `text` is not one."""
    match = ENTRY_ID.match(text)
    if match is None:
        return None
    ms, seq = int(match["ms"]), int(match["seq"])
    return (ms, seq) if ms < _U64 and seq < _U64 else None


def id_before(entry_id: str) -> str:
    """The greatest entry id below `entry_id` ("0-0" for the lowest): reading after it starts
    with `entry_id` itself."""
    parsed = parse_entry_id(entry_id)
    if parsed is None:
        raise ValueError(f"not a stream entry id: {entry_id!r}")
    ms, seq = parsed
    if seq > 0:
        return f"{ms}-{seq - 1}"
    return f"{ms - 1}-{_U64 - 1}" if ms > 0 else "0-0"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def entry_id_of(value: bytes | str | None) -> str:
    """A stream entry id as text ("0-0" for none)."""
    return "0-0" if value is None else _text(value)


def event_of(
    entry_id: bytes | str | None, fields: Mapping[bytes | str, bytes | str] | None
) -> JobEvent | None:
    """The event stored as one stream entry; None for an entry that is not one (logged)."""
    if entry_id is None or fields is None:
        return None
    by_name = {_text(name): _text(value) for name, value in fields.items()}
    try:
        data = json.loads(by_name["data"])
        return JobEvent(id=_text(entry_id), kind=EventKind(by_name["kind"]), data=data)
    except (KeyError, ValueError) as error:  # pydantic's ValidationError is a ValueError
        log.warning("skipping a malformed event entry %r: %s", entry_id, error)
        return None


def status_data(job: Job) -> dict[str, Any]:
    """A status event's data: the job's status JSON, as GET /status shows it, without the result."""
    status = describe_job(job, include_result=False)
    return status.model_dump(mode="json", exclude={"result"})


def _running_ttl_s(job: Job) -> int:
    """How long a running job's stream lives: the job's timeout plus the longer of its result
    and failure TTLs (`end_job` then shortens it to the record's own)."""
    kept = [ttl for ttl in (job.result_ttl, job.failure_ttl) if ttl is not None and ttl > 0]
    timeout = job.timeout if job.timeout is not None and job.timeout > 0 else 0
    return int(timeout + (max(kept) if kept else FALLBACK_TTL_S))


def _encode(kind: EventKind, data: Mapping[str, Any] | BaseModel) -> dict[FieldT, EncodableT]:
    payload = (
        data.model_dump_json()
        if isinstance(data, BaseModel)
        else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    )
    return {"kind": kind.value, "data": payload}


class EventPublisher:
    """Appends one running job's events to its stream, bounded and expiring; never raises for
    Redis (a failed publish is logged and the job goes on)."""

    def __init__(self, connection: Redis, key: str, ttl_s: int) -> None:
        self._connection = connection
        self._key = key
        self._ttl_s = ttl_s

    @classmethod
    def for_job(cls, job: Job) -> EventPublisher:
        """The publisher of `job`'s stream, expiring after its timeout plus its result TTL."""
        return cls(job.connection, Keys(job.origin).events(job.id), _running_ttl_s(job))

    def publish(self, kind: EventKind, data: Mapping[str, Any] | BaseModel) -> str | None:
        """Append one event; its entry id, or None when Redis refused (logged)."""
        return self._append(kind, data, restart=False)

    def start_attempt(self, job: Job) -> str | None:
        """Empty the stream and append the job's status (`started`): a retried job streams its
        new attempt alone, and the stream keeps its last id, so ids still only grow."""
        try:
            data = status_data(job)
        except RedisError as error:
            log.warning("could not read job %s for its started event: %s", job.id, error)
            return None
        return self._append(EventKind.STATUS, data, restart=True)

    def _append(
        self, kind: EventKind, data: Mapping[str, Any] | BaseModel, *, restart: bool
    ) -> str | None:
        try:
            with self._connection.pipeline(transaction=True) as pipeline:
                if restart:
                    pipeline.xtrim(self._key, maxlen=0, approximate=False)
                pipeline.xadd(
                    self._key, _encode(kind, data), maxlen=STREAM_MAXLEN, approximate=True
                )
                pipeline.expire(self._key, self._ttl_s)
                replies = pipeline.execute()
        except RedisError as error:
            log.warning("could not publish a %s event on %s: %s", kind.value, self._key, error)
            return None
        return _text(replies[-2])


def publish_end(job: Job) -> None:
    """Append the ended job's terminal status to its stream (once), which then expires with the
    job's record (persists where the record does, goes where it is gone); advisory, like every
    publish."""
    connection = job.connection
    key = Keys(job.origin).events(job.id)
    try:
        current = Job.fetch(job.id, connection=connection, serializer=job.serializer)
        ttl_s = int(connection.ttl(current.key))
        newest = connection.xrevrange(key, count=1)
        if newest and (event := event_of(*newest[0])) is not None and event.terminal:
            return  # announced already (end_job may run more than once for a job)
        with connection.pipeline(transaction=True) as pipeline:
            pipeline.xadd(
                key,
                _encode(EventKind.STATUS, status_data(current)),
                maxlen=STREAM_MAXLEN,
                approximate=True,
            )
            if ttl_s > 0:
                pipeline.expire(key, ttl_s)
            elif ttl_s == -1:  # the record is kept for good
                pipeline.persist(key)
            else:  # the record is gone already
                pipeline.delete(key)
            pipeline.execute()
    except NoSuchJobError:  # erased or expired meanwhile: its events go with it
        with contextlib.suppress(RedisError):
            connection.delete(key)
    except RedisError as error:
        log.warning("could not publish the end of job %s on its events: %s", job.id, error)
