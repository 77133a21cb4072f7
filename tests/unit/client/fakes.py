"""A fake of the service's routes that the client calls, in memory, and a recording reporter."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from transcribe_client.batch import Outcome
from transcribe_client.inputs import Item
from transcribe_client.service import JobState

RUNNING: list[dict[str, Any]] = [
    {"status": "queued", "queue_position": 1, "progress": {"stage": "queued", "percent": 0.0}},
    {"status": "started", "progress": {"stage": "transcribing", "percent": 50.0}},
]
"""The states a fake job passes through before its end, one per status request."""


@dataclass
class FakeJob:
    job_id: str
    end: str
    error: str | None = None
    polls: int = 0

    def body(self, ended: bool) -> dict[str, Any]:
        if ended:
            return {"job_id": self.job_id, "status": self.end, "error": self.error,
                    "progress": {"stage": "done", "percent": 100.0}}  # fmt: skip
        return {"job_id": self.job_id, "error": None, **RUNNING[min(self.polls, len(RUNNING) - 1)]}


@dataclass
class FakeServer:
    """POST /transcribe (with Idempotency-Key replays), /status long-poll, the events stream
    (or Starlette's 404 for a server without it), /result, DELETE /jobs/{id}."""

    with_events: bool = True
    end: str = "finished"
    error: str | None = None
    answers: list[httpx.Response] = field(default_factory=list)
    """Answers given to the next submissions, before any job is made (401, 429, ...)."""
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    uploads: list[bytes] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def calls(self, method: str, prefix: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path.startswith(prefix)]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/livez":
            return httpx.Response(200, json={"status": "ok"})
        if request.method == "POST" and path.startswith("/transcribe"):
            return self._submit(request)
        job_id = path.rsplit("/events", 1)[0].rsplit("/", 1)[-1]
        job = self.jobs.get(job_id)
        if path.endswith("/events"):
            if not self.with_events:
                return httpx.Response(404, json={"detail": "Not Found"})
            assert job is not None
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, content=self._stream(job)
            )
        if job is None:
            return httpx.Response(404, json={"detail": f"no job {job_id!r}"})
        if path.startswith("/status/"):
            ended = job.polls >= len(RUNNING)
            body = job.body(ended)
            job.polls += 1
            return httpx.Response(200, json=body)
        if path.startswith("/result/"):
            return httpx.Response(200, content=f"{request.url.params['format']} of {job_id}")
        if request.method == "DELETE":
            del self.jobs[job_id]
            self.keys = {key: value for key, value in self.keys.items() if value != job_id}
            return httpx.Response(204)
        return httpx.Response(404, json={"detail": "Not Found"})

    def _submit(self, request: httpx.Request) -> httpx.Response:
        if self.answers:
            return self.answers.pop(0)
        self.uploads.append(request.read())
        key = request.headers["Idempotency-Key"]
        if key in self.keys:
            job = self.jobs[self.keys[key]]
            status = job.end if job.polls >= len(RUNNING) else "queued"
            return httpx.Response(
                200, json={"job_id": job.job_id, "status": status},
                headers={"Idempotent-Replayed": "true"},
            )  # fmt: skip
        job = FakeJob(str(uuid.uuid4()), self.end, self.error)
        self.jobs[job.job_id] = job
        self.keys[key] = job.job_id
        return httpx.Response(200, json={"job_id": job.job_id, "status": "queued"})

    def _stream(self, job: FakeJob) -> bytes:
        events = [
            ("status", job.body(False)),
            ("progress", {"stage": "transcribing", "percent": 40.0}),
            ("segment", {"id": 0, "start": 0.0, "end": 1.0, "text": " Hello", "words": []}),
            ("progress", {"stage": "transcribing", "percent": 100.0}),
            ("status", job.body(True)),
        ]
        job.polls = len(RUNNING)
        lines = [": keep-alive\n\n"]
        for number, (kind, data) in enumerate(events):
            lines.append(f"event: {kind}\nid: 1764634000123-{number}\ndata: {json.dumps(data)}\n\n")
        return "".join(lines).encode()


@dataclass
class RecordingReporter:
    """Keeps what a batch reported, as (label, what, detail) tuples."""

    seen: list[tuple[str, str, str]] = field(default_factory=list)

    def preparing(self, item: Item) -> None:
        self.seen.append((item.label, "preparing", ""))

    def uploading(self, item: Item, sent: int, total: int) -> None:
        self.seen.append((item.label, "uploading", f"{sent}/{total}"))

    def waiting(self, item: Item, message: str, seconds: float) -> None:
        self.seen.append((item.label, "waiting", f"{seconds:g} {message}"))

    def job(self, item: Item, state: JobState, reused: bool) -> None:
        stage = f" {state.stage} {state.percent}" if state.status == "started" else ""
        self.seen.append((item.label, "job", f"{state.status}{stage}{' reused' if reused else ''}"))

    def ended(self, item: Item, outcome: Outcome, detail: str) -> None:
        self.seen.append((item.label, str(outcome), detail))

    def of(self, what: str) -> list[str]:
        return [detail for _, kind, detail in self.seen if kind == what]
