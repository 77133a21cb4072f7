"""Cancelling a job: a queued one at once (rq's `Job.cancel`), a running one through its worker.

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

from api.errors import ServiceError
from common.cancellation import request_cancel
from common.contract import CANCELABLE, PublicStatus, public_status
from common.job_end import end_job
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
    with contextlib.suppress(InvalidJobOperation):
        job.cancel()
    # rq keeps a canceled job with no expiry: keep it as long as a failed one.
    connection.expire(job.key, settings.failure_ttl_s)
    end_job(job, settings)
    return "canceled"
