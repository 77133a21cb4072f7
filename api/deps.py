"""FastAPI dependencies: settings and the queue, as Annotated aliases that tests override."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from rq import Queue

from api.long_poll import JobEndWaiter
from common.outbound import OutboundPolicy
from config import Settings, get_settings

SettingsDep = Annotated[Settings, Depends(get_settings)]


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
