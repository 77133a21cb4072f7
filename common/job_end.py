"""The one path every end of a job takes (success, failure, abandonment, cancel)."""

from __future__ import annotations

import logging

from redis.exceptions import RedisError
from rq.job import Job

from common.contract import TERMINAL, Keys, meta_of, public_status, request_of
from common.events import publish_end
from common.fairness import feed
from common.job_events import announce_job_end
from common.redis_conn import replicas_hold
from common.storage import StorageUnavailable, storage_of
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
    delete_upload(job, settings)
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


def keeps_upload_after_end(settings: Settings) -> bool:
    """Whether an ended job's upload waits UPLOAD_KEEP_AFTER_END_S for the sweep (Redis can
    fail over) rather than going at the job's end."""
    return settings.redis_min_replicas > 0 and settings.upload_keep_after_end_s > 0


def delete_upload(job: Job, settings: Settings, *, once_replicated: bool = True) -> None:
    """Remove the job's upload: the file in UPLOAD_DIR or the object under S3_PREFIX in
    S3_BUCKET, never anything elsewhere, nor a client's own object (s3:// input).

    With `once_replicated` it waits for the job's end to reach REDIS_MIN_REPLICAS replicas
    first, and otherwise leaves the upload to the sweep: a failover that loses the end runs the
    job again, and it still needs its audio then. Where a failover can happen at all
    (REDIS_MIN_REPLICAS above 0), the upload is left to the sweep for UPLOAD_KEEP_AFTER_END_S
    anyway: a replica that acknowledged the end may still be resynced from another one, promoted
    while this master took writes, and lose it. Errors of the store are logged; the sweep
    removes what is left.
    """
    request = request_of(job)
    if request is None or request.keep_audio:
        return
    if once_replicated and keeps_upload_after_end(settings):
        log.debug("job %s ended; the sweep removes its upload after the grace", job.id)
        return
    if once_replicated:
        try:
            held = replicas_hold(job.connection, settings, Keys(job.origin).replication_marker)
        except RedisError:
            held = False
        if not held:
            log.warning(
                "job %s ended before its replicas knew; the sweep removes its upload", job.id
            )
            return
    try:
        if not storage_of(settings).delete(request.audio_path):
            log.warning(
                "job %s names an upload outside the service's store; left alone: %s",
                job.id,
                request.audio_path,
            )
    except (StorageUnavailable, OSError) as error:
        log.warning("job %s: its upload could not be deleted (the sweep will): %s", job.id, error)
