"""`stream=true` on /v1/audio/transcriptions: OpenAI's transcription events over SSE, fed by
the job's own segment events as the worker decodes them.

Each decoded segment gives a `transcript.text.delta` (its text, with the space that joins it to
the one before) and a `transcript.text.segment`; the job's end gives `transcript.text.done`
with the final text (authoritative: word alignment may re-split the segments after decoding),
then `data: [DONE]`. A job that failed or was canceled gives OpenAI's `{"error": {...}}`
instead, which the SDKs raise. A client that goes away leaves its job to finish, unless
OPENAI_CANCEL_ON_DISCONNECT says otherwise.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.http.deps import Submitting
from api.jobs.events import JobEventReader
from api.jobs.long_poll import read_status
from api.openai.errors import ended_without_result, error_body
from api.openai.jobs import client_left
from common.contract import PublicStatus
from common.events import EventKind

KEEP_ALIVE = b": keep-alive\n"
"""A comment line while nothing happens (no blank line after it: see api.http.routes.events)."""
DONE = b"data: [DONE]\n\n"
_background: set[asyncio.Task[None]] = set()
"""Disconnect handlers still running (kept so they are not garbage-collected mid-way)."""


def _data(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, separators=(',', ':'), ensure_ascii=False)}\n\n".encode()


async def openai_events(
    reader: JobEventReader, on: Submitting, job_id: str
) -> AsyncIterator[bytes]:
    """The SSE body for job `job_id`: deltas and segments as decoded, then done (or error)."""
    ended = False
    spoken = False
    try:
        async for event in reader.events(job_id, None):
            if event is None:
                yield KEEP_ALIVE
                continue
            if event.kind == EventKind.SEGMENT:
                text = str(event.data.get("text", "")).strip()
                segment_id = str(event.data.get("id"))
                if text:
                    yield _data(
                        {
                            "type": "transcript.text.delta",
                            "delta": f" {text}" if spoken else text,
                            "segment_id": segment_id,
                        }
                    )
                    spoken = True
                segment = {
                    "type": "transcript.text.segment",
                    "id": segment_id,
                    "start": event.data.get("start"),
                    "end": event.data.get("end"),
                    "text": text,
                }
                if event.data.get("speaker") is not None:
                    segment["speaker"] = event.data["speaker"]
                yield _data(segment)
            elif event.terminal:
                ended = True
                yield await _ending(on, job_id)
                yield DONE
                return
        ended = True  # the job went away (erased) while streaming
        yield _data(error_body(404, f"job {job_id} is gone (erased, or expired)"))
        yield DONE
    finally:
        if not ended:
            task = asyncio.ensure_future(client_left(on, job_id))
            _background.add(task)
            task.add_done_callback(_background.discard)


async def _ending(on: Submitting, job_id: str) -> bytes:
    """`transcript.text.done` with the final text, or OpenAI's error for a job that did not
    finish."""
    status = await run_in_threadpool(read_status, on.queue, job_id, on.caller)
    if status is not None and status.status == PublicStatus.FINISHED and status.result is not None:
        return _data({"type": "transcript.text.done", "text": status.result.text})
    state = status.status if status is not None else "gone"
    ended = ended_without_result(job_id, state, status.error if status is not None else None)
    return _data(ended.body())


def stream_answer(reader: JobEventReader, on: Submitting, job_id: str) -> StreamingResponse:
    """The streaming answer of a `stream=true` request, with the job's id in `X-Job-Id`."""
    return StreamingResponse(
        openai_events(reader, on, job_id),
        media_type="text/event-stream",
        headers={"X-Job-Id": job_id, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
