"""The one path every end of a job takes (success, failure, abandonment, cancel)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from redis.exceptions import RedisError
from rq.job import Job

from common.contract import TERMINAL, Keys, meta_of, public_status, request_of
from common.events import publish_end
from common.fairness import feed
from common.job_events import announce_job_end
from common.webhooks import schedule_delivery
from config import Settings

log = logging.getLogger(__name__)


def end_job(job: Job, settings: Settings) -> bool:
    """Once a job's state is stored: if it has ended, delete its upload, free its place among
    its API key's active jobs, publish its terminal status on its events (which then expire with
    it), wake its long-polls and schedule its webhook; returns whether it had ended.

    A job queued again for another attempt has not ended: it keeps its upload. Safe to call
    more than once for a job (the webhook is scheduled once).
    """
    job.get_status(refresh=True)
    if public_status(job) not in TERMINAL:
        return False
    delete_upload(job, settings.upload_dir)
    publish_end(job)  # advisory: it logs its own Redis errors
    keys = Keys(job.origin)
    owner = meta_of(job).owner
    try:
        if owner is not None:
            job.connection.zrem(keys.active(owner), job.id)  # its key may run another now
        announce_job_end(job.connection, keys.ended(job.id))
        schedule_delivery(job, settings)
        feed(job.connection, job.origin)
    except RedisError as error:
        log.warning("job %s ended, but its end could not be announced: %s", job.id, error)
    return True


def delete_upload(job: Job, upload_dir: Path) -> None:
    """Remove the job's upload, never a path outside `upload_dir`."""
    request = request_of(job)
    if request is None:
        return
    upload = Path(request.audio_path)
    if upload.parent.resolve() != upload_dir.resolve():
        log.warning("job %s names an upload outside UPLOAD_DIR; left alone: %s", job.id, upload)
        return
    with contextlib.suppress(FileNotFoundError):
        upload.unlink()
