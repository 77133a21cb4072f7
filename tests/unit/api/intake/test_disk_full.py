"""No space left at any step of saving an upload (write, fsync, rename): 507, no file, no job.

tests/faults/test_full_disk.py does the same against a real, full filesystem.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from rq import Queue

from config import Settings
from tests.fakes import queued_jobs
from tests.unit.conftest import uploads_left


def no_space(*_args: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("call", ["write", "fsync", "rename"])
def test_enospc_is_507_with_no_file_and_no_job(
    client: TestClient,
    tone_wav: Path,
    settings: Settings,
    queue: Queue,
    monkeypatch: pytest.MonkeyPatch,
    call: str,
) -> None:
    # The system call itself fails, as on a full volume (os.write: only for the upload's file).
    real_write = os.write
    upload_files: set[str] = set()

    def write(handle: int, data: bytes) -> int:
        target = os.readlink(f"/proc/self/fd/{handle}")
        if target.startswith(str(settings.upload_dir)):
            upload_files.add(target)
            no_space()
        return real_write(handle, data)

    monkeypatch.setattr(os, call, write if call == "write" else no_space)
    with tone_wav.open("rb") as handle:
        response = client.post(
            "/transcribe",
            files={"file": ("a.wav", handle, "audio/wav")},
            data={"engine": "whisperx"},
        )
    assert response.status_code == 507
    assert response.json() == {"detail": "the server has no space left for this upload"}
    assert uploads_left(settings) == []
    assert queued_jobs(queue) == 0
    assert (call != "write") or upload_files
