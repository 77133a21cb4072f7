"""Cancelling a job: a queued one at once (rq's `Job.cancel`), a running one through its worker.

A running job is stopped with rq's `stop-job` command; the worker turns it into a stop at the
job's next progress report (see `worker.stopping`). A cancel key set first also reaches a job a
worker takes at the same moment, or whose worker misses the command.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Literal

from redis.exceptions import RedisError
from rq import Queue
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job

from common.cancellation import request_cancel
from common.job_events import announce_job_end
from common.job_status import public_status
from common.webhooks import schedule_delivery
from config import Settings

log = logging.getLogger(__name__)

NOT_CANCELABLE = frozenset({"finished", "failed"})


class CancelConflict(Exception):
    """The job has already ended; `detail` says how, for the client."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _delete_upload(job: Job, upload_dir: Path) -> None:
    path = job.kwargs.get("audio_path") if isinstance(job.kwargs, dict) else None
    if not isinstance(path, str):
        return
    upload = Path(path)
    if upload.parent.resolve() == upload_dir.resolve():  # never a path outside the folder
        with contextlib.suppress(FileNotFoundError):
            upload.unlink()


def cancel_job(queue: Queue, settings: Settings, job: Job) -> Literal["canceled", "stopping"]:
    """Cancel `job`: `canceled` when it is (or already was), `stopping` when its worker was asked.

    Raises CancelConflict for a job that has finished or failed.
    """
    job.get_status(refresh=True)
    status = public_status(job)
    if status in NOT_CANCELABLE:
        raise CancelConflict(
            f"job {job.id} has already {status}; only queued or running jobs can be canceled"
        )
    if status == "canceled":
        return "canceled"
    connection = queue.connection
    request_cancel(connection, job, max(settings.failure_ttl_s, settings.job_timeout_max_s))
    if status == "started":
        try:
            send_stop_job_command(connection, job.id, serializer=queue.serializer)
        except (InvalidJobOperation, NoSuchJobError):
            log.info("job %s is not executing yet; its cancel key will stop it", job.id)
        return "stopping"
    with contextlib.suppress(InvalidJobOperation):
        job.cancel()
    # rq keeps a canceled job with no expiry: keep it as long as a failed one.
    connection.expire(job.key, settings.failure_ttl_s)
    _delete_upload(job, settings.upload_dir)
    try:
        announce_job_end(connection, queue.key, job.id)
        schedule_delivery(job, settings)
    except RedisError as error:
        log.warning("job %s canceled, but its end could not be announced: %s", job.id, error)
    return "canceled"
