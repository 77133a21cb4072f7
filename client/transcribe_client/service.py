"""The transcription service's HTTP API as the client calls it, with the retries a batch needs."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from transcribe_client.sse import EventParser, ServerSentEvent

DEFAULT_SERVER = "http://localhost:8000"
TERMINAL_STATUSES = frozenset({"finished", "failed", "canceled", "stopped"})
"""A job in one of these states will not change any more."""
IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"

POLL_WAIT_S = 1.0
"""Long-poll wait while following a job without events: the answer comes at once when the job
ends, and at least once a second with its progress meanwhile."""
MAX_RETRY_AFTER_S = 60.0
"""The longest Retry-After the client waits out by itself; a longer one (a daily audio quota)
is reported as the error it is."""
TRANSPORT_RETRIES = 3
"""Attempts after a connection error or timeout, 2, 4 then 8 s apart (the API restarting)."""
TIMEOUT = httpx.Timeout(120.0, connect=10.0)
"""Reads may wait on the server's probe of a large upload; connecting should not take long."""
RETRIED_STATUSES = frozenset({409, 429, 503})
"""Answers worth repeating when they carry Retry-After: a first request with the same
Idempotency-Key still being handled (409), a limit of the API key (429), Redis away (503)."""


class ServiceError(Exception):
    """The server answered with an error: its status code and its own message."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(status_code, message)
        self.status_code = status_code
        self.message = message

    def __str__(self) -> str:
        return f"the server answered {self.status_code}: {self.message}"


class Unreachable(Exception):
    """The server could not be reached (refused, unknown host, timed out)."""


class EventsUnavailable(Exception):
    """The server has no job events stream: follow jobs by long-poll instead."""


@dataclass(frozen=True)
class JobState:
    """What the client shows of a job: its status, stage, percent, queue place and error."""

    job_id: str
    status: str
    stage: str | None = None
    percent: float | None = None
    queue_position: int | None = None
    error: str | None = None

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> JobState:
        """Read the status JSON of `GET /status/{id}` (or an events stream's `status` event)."""
        progress = body.get("progress") or {}
        percent = progress.get("percent")
        position = body.get("queue_position")
        return cls(
            job_id=str(body["job_id"]),
            status=str(body["status"]),
            stage=progress.get("stage"),
            percent=float(percent) if isinstance(percent, int | float) else None,
            queue_position=position if isinstance(position, int) else None,
            error=body.get("error"),
        )

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class Accepted:
    """A submission's answer: the job, its status now, and whether an earlier request with the
    same Idempotency-Key had already made it."""

    job_id: str
    status: str
    replayed: bool


def error_message(response: httpx.Response) -> str:
    """The server's own words for an error answer: `detail` (FastAPI's list of field errors
    joined), OpenAI's `error.message`, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, str):
            return detail
        if isinstance(detail, list):
            return "; ".join(_field_error(item) for item in detail)
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return response.text.strip()[:500]


def _field_error(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    location = [str(part) for part in item.get("loc", []) if part not in ("body", "query")]
    message = str(item.get("msg", item))
    return f"{'.'.join(location)}: {message}" if location else message


def _retry_after_s(response: httpx.Response) -> float | None:
    try:
        return max(float(response.headers["Retry-After"]), 0.0)
    except (KeyError, ValueError):
        return None


class _CountingReader(io.BufferedReader):
    """A file read for upload that reports how far it has been read after each read."""

    def __init__(self, path: Path, on_read: Callable[[int], None]) -> None:
        super().__init__(io.FileIO(path, "rb"))
        self._on_read = on_read

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        self._on_read(self.tell())
        return data


Waiting = Callable[[str, float], None]
"""Told the server's message and the seconds the client waits before asking again."""


class Service:
    """One server, one API key; `async with` opens and closes its connections."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"User-Agent": f"transcribe-client/{version('transcribe-client')}"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=TIMEOUT, transport=transport
        )
        self.has_events: bool | None = None
        """Whether the server streams job events; None until the first try tells."""

    async def __aenter__(self) -> Service:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._http.aclose()

    async def check_reachable(self) -> None:
        """Fail at once with Unreachable when nothing answers at the server's address."""
        try:
            await self._http.get("/livez")
        except httpx.TransportError as error:
            raise self._unreachable(error) from error

    def _unreachable(self, error: httpx.TransportError) -> Unreachable:
        reason = str(error) or type(error).__name__
        return Unreachable(f"cannot reach the server at {self.base_url}: {reason}")

    async def _request(
        self, send: Callable[[], Awaitable[httpx.Response]], waiting: Waiting | None = None
    ) -> httpx.Response:
        """`send()` until it gets an answer that is not worth repeating; a ServiceError for an
        error answer, Unreachable once the connection has failed TRANSPORT_RETRIES more times."""
        failures = 0
        while True:
            try:
                response = await send()
            except httpx.TransportError as error:
                failures += 1
                if failures > TRANSPORT_RETRIES:
                    raise self._unreachable(error) from error
                await asyncio.sleep(2.0**failures)
                continue
            wait_s = _retry_after_s(response)
            if (
                response.status_code in RETRIED_STATUSES
                and wait_s is not None
                and wait_s <= MAX_RETRY_AFTER_S
            ):
                if waiting is not None:
                    waiting(error_message(response), wait_s)
                await asyncio.sleep(wait_s)
                continue
            if response.is_error:
                raise ServiceError(response.status_code, error_message(response))
            return response

    async def submit_file(
        self,
        path: Path,
        fields: Mapping[str, str],
        idempotency_key: str,
        on_sent: Callable[[int], None] | None = None,
        waiting: Waiting | None = None,
    ) -> Accepted:
        """`POST /transcribe`; `on_sent` hears how many of the file's bytes have gone out."""

        async def send() -> httpx.Response:
            with _CountingReader(path, on_sent or (lambda _sent: None)) as handle:
                return await self._http.post(
                    "/transcribe",
                    files={"file": (path.name, handle, "application/octet-stream")},
                    data=dict(fields),
                    headers={IDEMPOTENCY_HEADER: idempotency_key},
                )

        return _accepted(await self._request(send, waiting))

    async def submit_url(
        self,
        url: str,
        fields: Mapping[str, str],
        idempotency_key: str,
        waiting: Waiting | None = None,
    ) -> Accepted:
        """`POST /transcribe/url`: the server downloads the audio."""

        async def send() -> httpx.Response:
            return await self._http.post(
                "/transcribe/url",
                json={"url": url, **fields},
                headers={IDEMPOTENCY_HEADER: idempotency_key},
            )

        return _accepted(await self._request(send, waiting))

    async def status_body(self, job_id: str, wait_s: float = 0.0) -> dict[str, Any]:
        """The job's status JSON; with `wait_s`, answered as soon as the job ends (long-poll)."""

        async def send() -> httpx.Response:
            return await self._http.get(_job_path("/status", job_id), params={"wait": wait_s})

        body: dict[str, Any] = (await self._request(send)).json()
        return body

    async def status(self, job_id: str, wait_s: float = 0.0) -> JobState:
        return JobState.of(await self.status_body(job_id, wait_s))

    async def events(self, job_id: str) -> AsyncIterator[JobState]:
        """The job's state after each event of `GET /jobs/{id}/events`, until it has ended or
        the stream closes. EventsUnavailable when the server has no such route."""
        if self.has_events is False:
            raise EventsUnavailable
        path = _job_path("/jobs", job_id) + "/events"
        try:
            async with self._http.stream(
                "GET", path, headers={"Accept": "text/event-stream"}
            ) as response:
                content_type = response.headers.get("content-type", "")
                if response.status_code != 200 or not content_type.startswith("text/event-stream"):
                    await response.aread()
                    if _no_such_route(response):
                        self.has_events = False
                        raise EventsUnavailable
                    raise ServiceError(response.status_code, error_message(response))
                self.has_events = True
                parser = EventParser()
                state: JobState | None = None
                async for line in response.aiter_lines():
                    event = parser.feed(line)
                    if event is None:
                        continue
                    changed = _apply_event(state, event, job_id)
                    if changed is not None and changed != state:
                        state = changed
                        yield state
                        if state.ended:
                            return
        except httpx.TransportError as error:
            raise self._unreachable(error) from error

    async def list_jobs(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` of the caller's jobs, newest first, following `next_cursor`."""
        jobs: list[dict[str, Any]] = []
        cursor: str | None = None
        while len(jobs) < limit:
            params: dict[str, str | int] = {"limit": min(100, limit - len(jobs))}
            if status:
                params["status"] = status
            if cursor:
                params["cursor"] = cursor

            async def send(params: dict[str, str | int] = params) -> httpx.Response:
                return await self._http.get("/jobs", params=params)

            page = (await self._request(send)).json()
            jobs.extend(page["jobs"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return jobs[:limit]

    async def cancel(self, job_id: str) -> tuple[int, dict[str, Any] | None]:
        """`DELETE /jobs/{id}`: 200 canceled, 202 stopping (with the status), 204 erased."""

        async def send() -> httpx.Response:
            return await self._http.delete(_job_path("/jobs", job_id))

        response = await self._request(send)
        return response.status_code, (response.json() if response.status_code != 204 else None)

    async def erase(self, job_id: str) -> None:
        """Erase an ended job for good (its Idempotency-Key is then free for a new job)."""
        await self.cancel(job_id)

    async def result(self, job_id: str, output_format: str) -> bytes:
        """The finished transcript rendered by the server in `output_format`."""

        async def send() -> httpx.Response:
            return await self._http.get(
                _job_path("/result", job_id), params={"format": output_format}
            )

        return (await self._request(send)).content


def _job_path(prefix: str, job_id: str) -> str:
    return f"{prefix}/{quote(job_id, safe='')}"


def _accepted(response: httpx.Response) -> Accepted:
    body = response.json()
    return Accepted(
        job_id=str(body["job_id"]),
        status=str(body.get("status", "queued")),
        replayed=response.headers.get(REPLAYED_HEADER, "").lower() == "true",
    )


def _no_such_route(response: httpx.Response) -> bool:
    """An answer from a server without the events route: Starlette's own 404 or a 405."""
    if response.status_code == 405:
        return True
    return response.status_code == 404 and error_message(response) == "Not Found"


def _apply_event(state: JobState | None, event: ServerSentEvent, job_id: str) -> JobState | None:
    """The job's state after `event`: a `status` event replaces it, a `progress` event moves
    the stage and percent of a running job; `segment` and unknown events change nothing."""
    try:
        data = json.loads(event.data)
    except ValueError:
        return state
    if not isinstance(data, dict):
        return state
    if event.event == "status":
        return JobState.of({"job_id": job_id, **data})
    if event.event == "progress":
        current = state or JobState(job_id=job_id, status="started")
        percent = data.get("percent")
        return replace(
            current,
            status="started" if current.status == "queued" else current.status,
            stage=data.get("stage", current.stage),
            percent=float(percent) if isinstance(percent, int | float) else None,
            queue_position=None,
        )
    return state
