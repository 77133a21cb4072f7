"""Removes uploads that no live job needs: an ended job's file, and files no job refers to."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from pathlib import Path

from rq import Queue
from rq.job import Job

log = logging.getLogger(__name__)

LIVE_STATUSES = frozenset({"queued", "started", "scheduled", "deferred"})
"""A job in one of these states may still read its upload."""

INCOMING_PREFIX = ".incoming-"
"""Name prefix of an upload the API is still receiving (see api.uploads)."""

UPLOAD_NAME = re.compile(
    r"^(?P<job_id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.\w+$"
)
"""An accepted upload: `<job id>.<extension>`."""


def _job_status(queue: Queue, job_id: str) -> str | None:
    raw = queue.connection.hget(Job.key_for(job_id), "status")
    if raw is None:
        return None if not queue.connection.exists(Job.key_for(job_id)) else ""
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def sweep_uploads(
    queue: Queue, upload_dir: Path, orphan_age_s: float, now: float | None = None
) -> list[Path]:
    """Delete, in `upload_dir`, the uploads no live job needs; returns what was removed.

    - `<job id>.<ext>` whose job has ended (finished, failed, stopped, canceled): at once;
    - `<job id>.<ext>` whose job does not exist (expired, or never enqueued): once untouched
      for `orphan_age_s` (the API renames a file a moment before it enqueues its job);
    - `.incoming-*` (an upload cut off mid-way, e.g. by a killed API): once untouched for
      `orphan_age_s`.

    A file whose job is queued, started, scheduled or deferred is never touched, nor is a file
    with any other name.
    """
    moment = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = list(os.scandir(upload_dir))
    except FileNotFoundError:
        return removed
    for entry in entries:
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            idle_s = moment - entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue
        if entry.name.startswith(INCOMING_PREFIX):
            doomed = idle_s > orphan_age_s
        else:
            match = UPLOAD_NAME.match(entry.name)
            if match is None:
                continue
            status = _job_status(queue, match["job_id"])
            if status is None:
                doomed = idle_s > orphan_age_s
            else:
                doomed = status != "" and status not in LIVE_STATUSES
        if doomed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    if removed:
        log.info("removed %d upload(s) no live job needs", len(removed))
    return removed
