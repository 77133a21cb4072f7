"""An index of transcription jobs by creation time, so `GET /jobs` pages newest-first cheaply."""

# A Redis sorted set per queue holds each job id scored by its creation time in microseconds.
# Entries older than the longest a job can be kept are trimmed at every enqueue; ids whose job has
# expired in between are dropped when a listing meets them. A status filter is applied while
# scanning, so one request examines at most SCAN_LIMIT ids and may return a short page with a
# cursor to go on from.

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from redis.client import Pipeline
from rq import Queue
from rq.job import Job

from api.errors import InvalidField
from common.contract import Keys, PublicStatus, public_status
from config import Settings

SCAN_LIMIT = 1000
"""Most index entries one listing request looks at when a status filter skips jobs."""

BATCH = 100
CURSOR_PATTERN = re.compile(r"^(\d{1,20})-([0-9a-f-]{36})$")


def _score(moment: datetime) -> int:
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


def index_job(pipeline: Pipeline, job: Job, settings: Settings, owner: str | None = None) -> None:
    """Add a new job to the index (and to its owner's) and drop entries older than any job can
    live, in `pipeline` (the enqueue's own transaction: a job is never queued unlisted)."""
    created = job.created_at or datetime.now(UTC)
    keep_us = (
        max(settings.result_ttl_s, settings.failure_ttl_s) + settings.job_timeout_max_s
    ) * 1_000_000
    keys = Keys(job.origin)
    for key in (keys.index,) if owner is None else (keys.index, keys.owner_index(owner)):
        pipeline.zadd(key, {job.id: _score(created)})
        pipeline.zremrangebyscore(key, "-inf", f"({_score(datetime.now(UTC)) - keep_us}")


@dataclass(frozen=True)
class Page:
    """Jobs of one page and where the next one starts."""

    jobs: list[Job]
    next_cursor: str | None


def _parse_cursor(cursor: str) -> tuple[int, str]:
    match = CURSOR_PATTERN.match(cursor)
    if match is None:
        raise InvalidField("cursor", f"cursor {cursor!r} is not one this API handed out", cursor)
    return int(match.group(1)), match.group(2)


def _member(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def list_jobs(
    queue: Queue,
    limit: int,
    status: PublicStatus | None = None,
    cursor: str | None = None,
    owner: str | None = None,
) -> Page:
    """Up to `limit` jobs, newest first, after `cursor`, in `status` and of `owner` (an API
    key's name) when given.

    Raises InvalidField (422) for a cursor this API did not hand out.
    """
    connection = queue.connection
    keys = Keys(queue.name)
    key = keys.index if owner is None else keys.owner_index(owner)
    after = _parse_cursor(cursor) if cursor else None
    found: list[Job] = []
    scanned = 0
    last_seen = after
    exhausted = False
    while len(found) < limit and scanned < SCAN_LIMIT:
        top = "+inf" if last_seen is None else str(last_seen[0])
        raw = cast(
            "list[tuple[bytes, float]]",
            connection.zrevrangebyscore(key, top, "-inf", start=0, num=BATCH, withscores=True),
        )
        entries = [(_member(member), int(score)) for member, score in raw]
        if last_seen is not None:
            # Equal scores come in descending member order: those not below the cursor were seen.
            seen = last_seen
            entries = [(m, sc) for m, sc in entries if sc < seen[0] or m < seen[1]]
        if not entries:
            exhausted = True
            break
        jobs = Job.fetch_many([member for member, _ in entries], connection, queue.serializer)
        gone: list[str] = []
        for position, ((member, score), job) in enumerate(zip(entries, jobs, strict=True)):
            scanned += 1
            last_seen = (score, member)
            if job is None:
                gone.append(member)
            elif status is None or public_status(job) == status:
                found.append(job)
                if len(found) == limit:
                    exhausted = position == len(entries) - 1 and len(raw) < BATCH
                    break
        if gone:
            connection.zrem(key, *gone)
        if len(found) < limit and len(raw) < BATCH:
            exhausted = True
            break
    next_cursor = None if exhausted or last_seen is None else f"{last_seen[0]}-{last_seen[1]}"
    return Page(jobs=found, next_cursor=next_cursor)
