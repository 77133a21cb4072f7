"""Idempotency-Key: the same key with the same request gives back the same job, never a second.

The key is claimed (`SET NX`) before the job is made, so racing requests cannot both make one;
the record (job id, digests of file and fields) lives as long as the job's result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import RedisError, WatchError
from rq import Queue
from starlette.concurrency import run_in_threadpool

from api.errors import ServiceError
from common.contract import Keys, load_job, public_status
from config import Settings

HEADER = "Idempotency-Key"
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
"""What a key may be: 1 to 255 visible ASCII characters (a UUID is the usual choice)."""

PENDING = "pending"
DONE = "done"


def conflict(detail: str, retry_after_s: int | None = None) -> ServiceError:
    """The 409 for a key that cannot be used for this request, with Retry-After when waiting
    can help."""
    return ServiceError(409, detail, {"Retry-After": str(retry_after_s)} if retry_after_s else None)


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


def redis_key(queue_name: str, key: str, owner: str | None = None) -> str:
    """Where a client's key is recorded, scoped to the API key `owner` (the same
    Idempotency-Key from two API keys is two jobs); hashed into a short, safe Redis name."""
    scoped = key if owner is None else f"{owner}\0{key}"
    return Keys(queue_name).idempotency(hashlib.sha256(scoped.encode()).hexdigest())


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
    with the same file and fields. Raises a 409 ServiceError when the key came with
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
            raise conflict(
                f"this {HEADER} was already used with a different file (job "
                f"{earlier.get('job_id')}); use a new key for a new upload"
            )
        if earlier.get("fields_sha256") != fingerprint.fields_sha256:
            raise conflict(
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
        raise conflict(
            f"a request with this {HEADER} is still being handled; retry shortly",
            retry_after_s=1,
        )
    raise conflict(f"this {HEADER} is contended; retry shortly", retry_after_s=1)


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


@dataclass(frozen=True)
class Idempotency:
    """What a request brings for its Idempotency-Key: the key (or None) and what it says."""

    key: str | None
    fingerprint: Fingerprint
    fetch_s: float
    """The longest the request may take to fetch its audio (a claim must outlive it)."""
    keep_s: int | None = None
    """How long the key leads to its job; None: as long as the job's result (RESULT_TTL_S)."""


@dataclass
class KeyedSubmission:
    """One request's use of its Idempotency-Key, from claim to confirm or release.

    Without a key it does nothing.
    """

    queue: Queue
    settings: Settings
    key: str | None
    fingerprint: Fingerprint
    pending_ttl_s: int
    """How long a claim lasts before its job exists: longer than the request's own work."""
    owner: str | None = None
    keep_s: int | None = None
    """How long a confirmed key leads to its job; None: RESULT_TTL_S."""

    @contextlib.asynccontextmanager
    async def claim(self, job_id: str) -> AsyncIterator[Replay | None]:
        """Claim the key for `job_id` for the block; yields the earlier job on a replay.

        Leaving the block normally keeps the key for as long as the job's result (the job is
        enqueued by then); leaving it by an error frees the key. Raises a 409 ServiceError when
        the key cannot be used for this request.
        """
        if self.key is None:
            yield None
            return
        outcome = await run_in_threadpool(
            claim,
            self.queue.connection,
            redis_key(self.queue.name, self.key, self.owner),
            job_id,
            self.fingerprint,
            self.pending_ttl_s,
            self._job_status,
        )
        if isinstance(outcome, Replay):
            yield outcome
            return
        connection = self.queue.connection
        made = False
        try:
            yield None
            made = True
        finally:
            # Best effort either way: a claim left pending still leads replays to the job,
            # which exists; a claim not released expires.
            with contextlib.suppress(RedisError):
                if made:
                    keep_s = self.keep_s or self.settings.result_ttl_s
                    await run_in_threadpool(confirm, connection, outcome, self.fingerprint, keep_s)
                else:
                    await run_in_threadpool(release, connection, outcome)

    def _job_status(self, job_id: str) -> str | None:
        job = load_job(self.queue, job_id)
        return public_status(job) if job is not None else None
