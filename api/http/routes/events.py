"""GET /jobs/{job_id}/events: a job's status, progress and segments as Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Response
from fastapi.sse import EventSourceResponse, format_sse_event
from starlette.concurrency import run_in_threadpool

from api.errors import ServiceError, not_found
from api.http.deps import CallerDep, EventReaderDep, QueueDep
from api.http.schemas import errors
from api.jobs.queue import find_job
from common.events import JobEvent, parse_entry_id

router = APIRouter(tags=["jobs"])

KEEP_ALIVE = b": keep-alive\n"
"""The comment line sent when nothing happened for a while. No blank line follows it: some
clients (httpx-sse) would dispatch an empty event at the blank line once an id was seen."""

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
"""Nothing between the service and the client may keep or buffer the stream (nginx reads the
second)."""

LastEventIdHeader = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        description=(
            "Resume after this event (the `id:` of the last one received, `<ms>-<seq>`): "
            "every event after it follows. EventSource clients send it when they reconnect."
        ),
    ),
]


async def _wire(events: AsyncIterator[JobEvent | None]) -> AsyncIterator[bytes]:
    async for event in events:
        if event is None:
            yield KEEP_ALIVE
        else:
            yield format_sse_event(event=event.kind.value, id=event.id, data_str=event.data_json())


@router.get(
    "/jobs/{job_id}/events",
    # Error answers are JSON: the stream's media type is declared for 200 alone.
    response_class=Response,
    summary="A job's live events: status, progress and each segment as it is decoded (SSE)",
    responses={
        200: {
            "description": "Server-Sent Events until the job's terminal status.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **errors(
            {
                400: "Last-Event-ID is not an event id.",
                404: "Unknown or expired job (or another key's).",
                503: "Redis unreachable; retry after Retry-After.",
            }
        ),
    },
)
async def job_events(
    job_id: str,
    queue: QueueDep,
    caller: CallerDep,
    reader: EventReaderDep,
    last_event_id: LastEventIdHeader = None,
) -> EventSourceResponse:
    """Server-Sent Events, each with its stream id as `id:`. First `event: status`, the job's
    status now (the GET /status JSON without `result`); then the segments decoded so far; then,
    live, `status`, `progress` (`stage`, `percent`) and `segment` events (`id`, `start`, `end`,
    `text`, `words`), until a last `status` in a terminal state, after which the server closes
    the stream. A job that has ended gets its status and segments, then the close.
    `Last-Event-ID` resumes after that event instead. `: keep-alive` comes when idle."""
    if last_event_id is not None and parse_entry_id(last_event_id) is None:
        raise ServiceError(
            400,
            f"Last-Event-ID {last_event_id[:80]!r} is not an event id of this stream: send the "
            "`id:` of the last event received, `<milliseconds>-<sequence>` (e.g. 1764634000123-0)",
        )
    if await run_in_threadpool(find_job, queue, job_id, caller) is None:
        raise not_found(job_id)
    return EventSourceResponse(_wire(reader.events(job_id, last_event_id)), headers=SSE_HEADERS)
