"""FastAPI dependencies, as Annotated aliases that tests override."""

from __future__ import annotations

import contextlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from redis.exceptions import RedisError
from rq import Queue

from api.errors import ServiceError
from api.jobs.events import JobEventReader
from api.jobs.idempotency import HEADER, KEY_PATTERN
from api.jobs.long_poll import JobEndWaiter
from api.jobs.queue import Caller
from api.keys.quotas import Limits, Quotas
from api.keys.store import ADMIN_NAME, KeyStore
from common.outbound import OutboundPolicy
from common.storage import Storage, storage_of
from config import Settings


def get_app_settings(request: Request) -> Settings:
    """The settings the app was built with (`create_app`)."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def get_queue(request: Request) -> Queue:
    """The transcription queue opened by the app's lifespan."""
    queue: Queue = request.app.state.queue
    return queue


QueueDep = Annotated[Queue, Depends(get_queue)]


def get_job_waiter(request: Request) -> JobEndWaiter:
    """Waits for job ends on the app's blocking Redis connection (opened by the lifespan)."""
    waiter: JobEndWaiter = request.app.state.job_waiter
    return waiter


JobWaiterDep = Annotated[JobEndWaiter, Depends(get_job_waiter)]


def get_event_reader(request: Request) -> JobEventReader:
    """Follows job event streams on the app's blocking Redis connection (opened by the lifespan)."""
    reader: JobEventReader = request.app.state.event_reader
    return reader


EventReaderDep = Annotated[JobEventReader, Depends(get_event_reader)]


def get_outbound_policy(settings: SettingsDep) -> OutboundPolicy:
    """The address rules for URL input and callbacks (OUTBOUND_ALLOWLIST), resolving with DNS."""
    return OutboundPolicy(settings.outbound_allowlist)


OutboundPolicyDep = Annotated[OutboundPolicy, Depends(get_outbound_policy)]


def get_storage(settings: SettingsDep) -> Storage:
    """Where uploads are staged (STORAGE_BACKEND), and the store s3:// input is read from."""
    return storage_of(settings)


StorageDep = Annotated[Storage, Depends(get_storage)]


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


_bearer = HTTPBearer(auto_error=False, description="An API key (`python -m api.keys create`).")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key.")


def _unauthorized(detail: str) -> ServiceError:
    return ServiceError(401, detail, {"WWW-Authenticate": "Bearer"})


def get_caller(
    settings: SettingsDep,
    queue: QueueDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key_header)],
) -> Caller | None:
    """The API key a request came with, checked in Redis on every request (so a revocation
    holds at once in every process); None while REQUIRE_API_KEY is off (any key is ignored).

    Raises a 401 ServiceError for a missing, unknown or revoked key.
    """
    if not settings.require_api_key:
        return None
    secret = bearer.credentials if bearer is not None else api_key
    if not secret:
        raise _unauthorized(
            "this server needs an API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
        )
    admin = settings.admin_api_key
    if admin is not None and hmac.compare_digest(
        secret.encode(), admin.get_secret_value().encode()
    ):
        return Caller(ADMIN_NAME, admin=True)
    store = KeyStore(queue.connection, queue.name)
    key = store.find(secret)
    if key is None:
        raise _unauthorized("the API key is unknown or has been revoked")
    limits = Limits.of(key.limits, settings)
    Quotas(queue.connection, queue.name).hit_rate(key.name, limits.rate_per_min)
    with contextlib.suppress(RedisError):
        store.touch(key.name)
    return Caller(key.name, admin=key.admin, limits=limits)


CallerDep = Annotated[Caller | None, Depends(get_caller)]


@dataclass(frozen=True)
class Submitting:
    """What a submission route needs beside its body: settings, queue, address rules, the
    Idempotency-Key, who is asking and where uploads go."""

    settings: Settings
    queue: Queue
    policy: OutboundPolicy
    idempotency_key: str | None
    caller: Caller | None
    storage: Storage


def get_submitting(
    settings: SettingsDep,
    queue: QueueDep,
    policy: OutboundPolicyDep,
    caller: CallerDep,
    storage: StorageDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Submitting:
    """The submission routes' shared dependencies in one."""
    return Submitting(settings, queue, policy, idempotency_key, caller, storage)


SubmittingDep = Annotated[Submitting, Depends(get_submitting)]


def require_metrics_key(
    settings: SettingsDep,
    queue: QueueDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key_header)],
) -> None:
    """With METRICS_REQUIRE_ADMIN_KEY, an admin key (ADMIN_API_KEY or one made `--admin`),
    whether or not REQUIRE_API_KEY is on: 401 without a known key, 403 for another key."""
    if not settings.metrics_require_admin_key:
        return
    secret = bearer.credentials if bearer is not None else api_key
    if not secret:
        raise _unauthorized("GET /metrics needs an admin API key: send `Authorization: Bearer`")
    admin = settings.admin_api_key
    if admin is not None and hmac.compare_digest(
        secret.encode(), admin.get_secret_value().encode()
    ):
        return
    key = KeyStore(queue.connection, queue.name).find(secret)
    if key is None:
        raise _unauthorized("the API key is unknown or has been revoked")
    if not key.admin:
        raise ServiceError(403, "GET /metrics needs an admin API key")
