"""Idempotency-Key: the same key with the same upload gives back the same job, never a second one.

A key is claimed in Redis (`SET NX`) before the upload is probed and enqueued, so two requests
racing with one key cannot both create a job. The record holds the job id and SHA-256 digests of
the file and of the form fields; it is kept as long as the job's result (RESULT_TTL_S).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Header, HTTPException
from redis import Redis
from redis.exceptions import RedisError, WatchError
from rq import Queue
from starlette.concurrency import run_in_threadpool

from common.job_status import load_job, public_status
from config import Settings

HEADER = "Idempotency-Key"
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
"""What a key may be: 1 to 255 visible ASCII characters (a UUID is the usual choice)."""

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias=HEADER,
        pattern=KEY_PATTERN,
        description=(
            "Makes retries safe: the same key with the same request returns the first "
            "request's job (200) instead of queueing another; with a different file, URL or "
            "fields, 409."
        ),
    ),
]

PENDING = "pending"
DONE = "done"


class IdempotencyConflict(Exception):
    """The key cannot be used for this request; carries the HTTP answer for the client."""

    def __init__(self, detail: str, retry_after_s: int | None = None) -> None:
        super().__init__(detail)
        self.status_code = 409
        self.detail = detail
        self.retry_after_s = retry_after_s

    def as_http(self) -> HTTPException:
        """The 409 answer, with Retry-After when waiting can help."""
        headers = {"Retry-After": str(self.retry_after_s)} if self.retry_after_s else None
        return HTTPException(self.status_code, self.detail, headers)


@dataclass(frozen=True)
class Fingerprint:
    """What makes two requests the same: the file's bytes and the form's fields."""

    file_sha256: str
    fields_sha256: str

    @classmethod
    def of_json(cls, body: Mapping[str, Any]) -> Fingerprint:
        """A JSON request's fingerprint (no file: its URL is among the fields)."""
        return cls.of(
            "", {name: json.dumps(value) for name, value in body.items() if value is not None}
        )

    @classmethod
    def of(cls, file_sha256: str, fields: Mapping[str, str]) -> Fingerprint:
        """Digest the fields in a canonical order, blank ones left out."""
        canonical = json.dumps(
            {name: value for name, value in sorted(fields.items()) if value.strip()},
            separators=(",", ":"),
        )
        return cls(file_sha256, hashlib.sha256(canonical.encode()).hexdigest())


@dataclass(frozen=True)
class Claim:
    """A key reserved by this request for `job_id`, to be confirmed or released."""

    redis_key: str
    job_id: str
    record: bytes


@dataclass(frozen=True)
class Replay:
    """The key was used before with the same request: the job it made, and its status now."""

    job_id: str
    status: str


def redis_key(queue_name: str, key: str) -> str:
    """Where a client's key is recorded; hashed, so any key makes a short, safe Redis name."""
    return f"{queue_name}:idempotency:{hashlib.sha256(key.encode()).hexdigest()}"


def _record(job_id: str, fingerprint: Fingerprint, state: str) -> bytes:
    return json.dumps(
        {
            "job_id": job_id,
            "file_sha256": fingerprint.file_sha256,
            "fields_sha256": fingerprint.fields_sha256,
            "state": state,
        }
    ).encode()


def claim(
    connection: Redis,
    key: str,
    job_id: str,
    fingerprint: Fingerprint,
    pending_ttl_s: int,
    job_status: Callable[[str], str | None],
) -> Claim | Replay:
    """Reserve `key` for a new job `job_id`, or find the job an earlier request made with it.

    Returns a Claim when this request should create the job, or a Replay when the same key came
    with the same file and fields. Raises IdempotencyConflict (409) when the key came with
    another file or other fields, or while the first request is still being handled.
    `job_status` gives a job's current status, None while it is not saved (or no longer is).
    """
    record = _record(job_id, fingerprint, PENDING)
    for _ in range(3):
        if connection.set(key, record, nx=True, ex=pending_ttl_s):
            return Claim(key, job_id, record)
        existing = connection.get(key)
        if existing is None:
            continue  # expired between the two calls
        if isinstance(existing, str):
            existing = existing.encode()
        earlier = json.loads(existing)
        if earlier.get("file_sha256") != fingerprint.file_sha256:
            raise IdempotencyConflict(
                f"this {HEADER} was already used with a different file (job "
                f"{earlier.get('job_id')}); use a new key for a new upload"
            )
        if earlier.get("fields_sha256") != fingerprint.fields_sha256:
            raise IdempotencyConflict(
                f"this {HEADER} was already used with different fields (job "
                f"{earlier.get('job_id')}); use a new key for a different request"
            )
        earlier_job = str(earlier.get("job_id"))
        status = job_status(earlier_job)
        if status is not None:
            return Replay(earlier_job, status)
        if earlier.get("state") == DONE:
            # The job has expired (or was lost): the key is free again.
            _delete_if_unchanged(connection, key, existing)
            continue
        raise IdempotencyConflict(
            f"a request with this {HEADER} is still being handled; retry shortly",
            retry_after_s=1,
        )
    raise IdempotencyConflict(f"this {HEADER} is contended; retry shortly", retry_after_s=1)


def confirm(connection: Redis, claim: Claim, fingerprint: Fingerprint, ttl_s: int) -> None:
    """The job exists: keep the key → job record for `ttl_s`."""
    connection.set(claim.redis_key, _record(claim.job_id, fingerprint, DONE), ex=ttl_s)


def release(connection: Redis, claim: Claim) -> None:
    """No job was made: free the key, unless another request holds it by now."""
    _delete_if_unchanged(connection, claim.redis_key, claim.record)


def _delete_if_unchanged(connection: Redis, key: str, record: bytes) -> None:
    with connection.pipeline() as pipeline:
        try:
            pipeline.watch(key)  # type: ignore[no-untyped-call]
            if pipeline.get(key) == record:
                pipeline.multi()
                pipeline.delete(key)
                pipeline.execute()
        except WatchError:
            pass


@dataclass
class KeyedSubmission:
    """One request's use of its Idempotency-Key, from claim to confirm or release.

    Every method does nothing when the request came without a key.
    """

    queue: Queue
    settings: Settings
    key: str | None
    fingerprint: Fingerprint
    pending_ttl_s: int
    """How long a claim lasts before its job exists: longer than the request's own work."""
    claimed: Claim | None = None

    async def begin(self, job_id: str) -> Replay | None:
        """Claim the key for `job_id`; returns the earlier job when this is a replay.

        Raises the 409 HTTPException when the key cannot be used for this request.
        """
        if self.key is None:
            return None
        try:
            outcome = await run_in_threadpool(
                claim,
                self.queue.connection,
                redis_key(self.queue.name, self.key),
                job_id,
                self.fingerprint,
                self.pending_ttl_s,
                self._job_status,
            )
        except IdempotencyConflict as conflict:
            raise conflict.as_http() from None
        if isinstance(outcome, Replay):
            return outcome
        self.claimed = outcome
        return None

    def _job_status(self, job_id: str) -> str | None:
        job = load_job(self.queue, job_id)
        return public_status(job) if job is not None else None

    async def commit(self) -> None:
        """The job is enqueued: keep the key for as long as the job's result.

        Best effort: a claim left pending still leads replays to the job, which exists.
        """
        if self.claimed is not None:
            with contextlib.suppress(RedisError):
                await run_in_threadpool(
                    confirm,
                    self.queue.connection,
                    self.claimed,
                    self.fingerprint,
                    self.settings.result_ttl_s,
                )

    async def abort(self) -> None:
        """No job was made: free the key (best effort; it expires anyway)."""
        if self.claimed is not None:
            with contextlib.suppress(RedisError):
                await run_in_threadpool(release, self.queue.connection, self.claimed)
