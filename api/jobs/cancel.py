"""Cancelling a job (a queued one at once, a running one through its worker), and erasing an
ended one for good.

A running job gets rq's `stop-job` command, which its worker turns into a stop at the next
progress report; a cancel key set first also reaches a job a worker takes at that moment.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Literal

from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.results import Result

from api.errors import ServiceError
from common.cancellation import request_cancel
from common.contract import CANCELABLE, Keys, PublicStatus, meta_of, public_status
from common.fairness import withdraw
from common.job_end import delete_upload, end_job
from common.metrics import count_end
from config import Settings

log = logging.getLogger(__name__)


def cancel_job(settings: Settings, job: Job) -> Literal["canceled", "stopping"]:
    """Cancel `job`: `canceled` when it is (or already was), `stopping` when its worker was asked.

    Raises a 409 ServiceError for a job that has finished or failed.
    """
    job.get_status(refresh=True)
    status = public_status(job)
    if status == PublicStatus.CANCELED:
        return "canceled"
    if status not in CANCELABLE:
        raise ServiceError(
            409, f"job {job.id} has already {status}; only queued or running jobs can be canceled"
        )
    connection = job.connection
    request_cancel(connection, job, max(settings.failure_ttl_s, settings.job_timeout_max_s))
    if status == PublicStatus.STARTED:
        try:
            send_stop_job_command(connection, job.id, serializer=job.serializer)
        except (InvalidJobOperation, NoSuchJobError):
            log.info("job %s is not executing yet; its cancel key will stop it", job.id)
        return "stopping"
    owner = meta_of(job).owner
    if owner is not None:
        withdraw(connection, job.origin, owner, job.id)
    with contextlib.suppress(InvalidJobOperation):
        job.cancel()
        count_end(job, "canceled")
    # rq keeps a canceled job with no expiry: keep it as long as a failed one.
    connection.expire(job.key, settings.failure_ttl_s)
    end_job(job, settings)
    return "canceled"


def erase_job(settings: Settings, job: Job) -> None:
    """Delete an ended job for good: its record, transcript, upload, events, end signal, cancel
    key, webhook schedule and index entries (a privacy request)."""
    delete_upload(job, settings, once_replicated=False)
    keys = Keys(job.origin)
    owner = meta_of(job).owner
    with job.connection.pipeline() as pipeline:
        job.delete(pipeline=pipeline)
        pipeline.delete(
            Result.get_key(job.id), keys.events(job.id), keys.ended(job.id),
            keys.cancel(job.id), keys.webhook_scheduled(job.id),
        )  # fmt: skip
        pipeline.zrem(keys.webhooks_due, job.id)
        pipeline.zrem(keys.index, job.id)
        if owner is not None:
            pipeline.zrem(keys.owner_index(owner), job.id)
        pipeline.execute()
    log.info("job %s erased on request", job.id)
