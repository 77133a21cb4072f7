"""The worker's sweeper, live: leftovers of killed uploads and jobs are removed, nothing else."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from tests.services import running_service, wait_until

pytestmark = pytest.mark.integration

SWEEPER_ENV = {
    "UPLOAD_SWEEP_INTERVAL_S": "1",
    "UPLOAD_ORPHAN_AGE_S": "600",
    "MAINTENANCE_INTERVAL_S": "1",
    "WHISPERX_ALIGN": "false",
}


def leftover(folder: Path, name: str, age_s: float) -> Path:
    path = folder / name
    path.write_bytes(b"left behind")
    moment = time.time() - age_s
    os.utime(path, (moment, moment))
    return path


def test_the_sweeper_removes_stale_leftovers_and_nothing_else(tmp_path: Path) -> None:
    """Which job states keep an upload is tested on fakeredis (tests/unit/test_worker_recovery)."""
    with running_service(tmp_path, workers=1, worker_env=SWEEPER_ENV) as service:
        uploads = service.upload_dir
        stale_partial = leftover(uploads, ".incoming-killed-api", age_s=3600)
        stale_orphan = leftover(uploads, f"{uuid.uuid4()}.wav", age_s=3600)
        young_orphan = leftover(uploads, f"{uuid.uuid4()}.wav", age_s=10)
        foreign = leftover(uploads, "README.operator", age_s=99_999)

        wait_until(
            lambda: not stale_partial.exists() and not stale_orphan.exists(),
            30,
            "the sweeper to remove stale leftovers",
        )
        assert young_orphan.exists(), "an upload younger than UPLOAD_ORPHAN_AGE_S was removed"
        assert foreign.exists(), "a file that is not an upload was removed"
