"""FastAPI dependencies, as Annotated aliases that tests override."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from rq import Queue

from api.jobs.idempotency import HEADER, KEY_PATTERN
from api.jobs.long_poll import JobEndWaiter
from common.outbound import OutboundPolicy
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


def get_outbound_policy(settings: SettingsDep) -> OutboundPolicy:
    """The address rules for URL input and callbacks (OUTBOUND_ALLOWLIST), resolving with DNS."""
    return OutboundPolicy(settings.outbound_allowlist)


OutboundPolicyDep = Annotated[OutboundPolicy, Depends(get_outbound_policy)]


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


@dataclass(frozen=True)
class Submitting:
    """What a submission route needs beside its body: settings, queue, address rules, key."""

    settings: Settings
    queue: Queue
    policy: OutboundPolicy
    idempotency_key: str | None


def get_submitting(
    settings: SettingsDep,
    queue: QueueDep,
    policy: OutboundPolicyDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Submitting:
    """The submission routes' shared dependencies in one."""
    return Submitting(settings, queue, policy, idempotency_key)


SubmittingDep = Annotated[Submitting, Depends(get_submitting)]
