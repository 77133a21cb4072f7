"""A batch: each input uploaded once, followed to its end and its outputs written, N at a time.

Resuming needs no state of its own: a file whose outputs all exist is skipped, and every other
one is submitted with an Idempotency-Key derived from its content and the request's fields, so
the server answers a file it already has a job for with that job (queued, running or
finished) instead of transcribing it again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from transcribe_client.inputs import Item
from transcribe_client.service import (
    POLL_WAIT_S,
    Accepted,
    EventsUnavailable,
    JobState,
    Service,
    ServiceError,
    Unreachable,
)

KEY_PREFIX = "transcribe-client-v1-"
"""Idempotency-Keys this client makes start so; the version changes if the recipe does."""
HASH_CHUNK_BYTES = 1 << 20
RETRIED_END_STATUSES = frozenset({"failed", "canceled", "stopped"})
"""A job found again in one of these states is erased and the file submitted afresh."""
WAITING_STATUSES = frozenset({"queued", "deferred", "scheduled"})
"""A job in one of these has not started: its queue position is what moves."""
FATAL_STATUSES = frozenset({401, 403})
"""Answers about the API key, which every other file would get too."""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class Outcome(StrEnum):
    """How one input ended."""

    DONE = "done"
    SKIPPED = "skipped"
    SUBMITTED = "submitted"
    FAILED = "failed"


class Fatal(Exception):
    """An error every other input would meet too (the key refused, the server gone, the
    options refused): the batch stops."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Request:
    """What every input is submitted with: the engine, the model, the language, the options."""

    engine: str
    model: str | None = None
    language: str | None = None
    options: tuple[tuple[str, str], ...] = ()

    def fields(self) -> dict[str, str]:
        """The form fields of `POST /transcribe` (and the JSON fields of `/transcribe/url`)."""
        fields = {"engine": self.engine, **dict(self.options)}
        if self.model:
            fields["model"] = self.model
        if self.language:
            fields["language"] = self.language
        return fields


def idempotency_key(content_digest: str, fields: Mapping[str, str]) -> str:
    """The same key for the same content (a file's SHA-256, or a URL) and the same fields."""
    canonical = json.dumps(
        {"content": content_digest, "fields": dict(sorted(fields.items()))},
        separators=(",", ":"),
        sort_keys=True,
    )
    return KEY_PREFIX + hashlib.sha256(canonical.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` under a temporary name, then rename: an interrupted run never leaves a
    partial output that a rerun would take for a finished one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    partial.write_bytes(data)
    os.replace(partial, path)


class Reporter(Protocol):
    """Shows a batch as it goes: progress bars on a terminal, one line per change elsewhere."""

    def preparing(self, item: Item) -> None:
        """The input has its turn: its content is being hashed."""

    def uploading(self, item: Item, sent: int, total: int) -> None:
        """`sent` of the file's `total` bytes have gone out."""

    def waiting(self, item: Item, message: str, seconds: float) -> None:
        """The server asked to come back in `seconds` (a limit of the key, Redis away)."""

    def job(self, item: Item, state: JobState, reused: bool) -> None:
        """The input's job, as it is now; `reused` when an earlier run had submitted it."""

    def ended(self, item: Item, outcome: Outcome, detail: str) -> None:
        """The input is through: the outputs written, the job id, or why it failed."""


@dataclass
class Batch:
    """Runs inputs through one server, `lanes` at a time."""

    service: Service
    request: Request
    reporter: Reporter
    wait: bool = True
    lanes: int = 4

    async def run(self, items: Sequence[Item]) -> Counter[Outcome]:
        """Every item's outcome, counted; raises Fatal when the batch had to stop."""
        outcomes: Counter[Outcome] = Counter()
        queue = iter(items)

        async def lane() -> None:
            for item in queue:
                outcomes[await self._process(item)] += 1

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.lanes, len(items))):
                    group.create_task(lane())
        except* Fatal as stopped:
            raise stopped.exceptions[0] from None
        return outcomes

    async def _process(self, item: Item) -> Outcome:
        missing = item.missing_outputs()
        if not missing:
            written = ", ".join(str(path) for _, path in item.outputs)
            self.reporter.ended(item, Outcome.SKIPPED, f"{written} already there")
            return Outcome.SKIPPED
        try:
            accepted = await self._submit(item)
            if accepted.replayed and accepted.status in RETRIED_END_STATUSES:
                # Its job from an earlier run failed: erasing it frees the key for a new one.
                await self.service.erase(accepted.job_id)
                accepted = await self._submit(item)
            if not self.wait:
                self.reporter.ended(item, Outcome.SUBMITTED, f"job {accepted.job_id}")
                return Outcome.SUBMITTED
            final = await self._follow(item, accepted)
            if final.status != "finished":
                reason = final.error or f"the job was {final.status}"
                self.reporter.ended(item, Outcome.FAILED, f"job {final.job_id}: {reason}")
                return Outcome.FAILED
            for output_format, path in missing.items():
                write_atomically(path, await self.service.result(final.job_id, output_format))
        except ServiceError as error:
            if error.status_code in FATAL_STATUSES:
                raise Fatal(str(error)) from None
            if error.status_code == 422 and item.source.path is not None:
                raise Fatal(str(error), EXIT_USAGE) from None
            self.reporter.ended(item, Outcome.FAILED, str(error))
            return Outcome.FAILED
        except Unreachable as error:
            raise Fatal(str(error)) from None
        except OSError as error:  # the input cannot be read, or an output cannot be written
            self.reporter.ended(item, Outcome.FAILED, str(error))
            return Outcome.FAILED
        self.reporter.ended(item, Outcome.DONE, ", ".join(str(path) for path in missing.values()))
        return Outcome.DONE

    async def _submit(self, item: Item) -> Accepted:
        self.reporter.preparing(item)
        fields = self.request.fields()

        def waiting(message: str, seconds: float) -> None:
            self.reporter.waiting(item, message, seconds)

        source = item.source
        if source.path is None:
            url = source.url or ""
            return await self.service.submit_url(url, fields, idempotency_key(url, fields), waiting)
        path = source.path
        digest = await asyncio.to_thread(file_sha256, path)
        total = path.stat().st_size

        def sent(count: int) -> None:
            self.reporter.uploading(item, count, total)

        sent(0)
        return await self.service.submit_file(
            path, fields, idempotency_key(digest, fields), sent, waiting
        )

    async def _follow(self, item: Item, accepted: Accepted) -> JobState:
        """Report the job's changes until it ends. While it waits, by long-poll, whose answers
        carry its moving queue position; once it runs, from its events stream where the server
        has one (its stage and percent as they change), else (or once the stream breaks off)
        by long-poll still."""
        state = JobState(job_id=accepted.job_id, status=accepted.status)
        self.reporter.job(item, state, accepted.replayed)
        streamed = False
        while not state.ended:
            if state.status not in WAITING_STATUSES and not streamed:
                streamed = True
                try:
                    async for state in self.service.events(accepted.job_id):
                        self.reporter.job(item, state, accepted.replayed)
                except (EventsUnavailable, Unreachable):
                    pass
                if state.ended:
                    break
            state = await self.service.status(accepted.job_id, POLL_WAIT_S)
            self.reporter.job(item, state, accepted.replayed)
        return state
