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

import api.uploads
from config import Settings
from tests.unit.conftest import uploads_left


def no_space(*_args: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def close_then_no_space(handle: int) -> None:
    os.close(handle)
    no_space()


def rename_without_space(*_args: object) -> None:
    no_space()


@pytest.mark.parametrize(
    ("target", "attribute", "replacement"),
    [
        (api.uploads, "_write_and_hash", no_space),
        (api.uploads, "_sync_and_close", close_then_no_space),
        (os, "rename", rename_without_space),
    ],
    ids=["write", "fsync", "rename"],
)
def test_enospc_is_507_with_no_file_and_no_job(
    client: TestClient,
    tone_wav: Path,
    settings: Settings,
    queue: Queue,
    monkeypatch: pytest.MonkeyPatch,
    target: object,
    attribute: str,
    replacement: object,
) -> None:
    monkeypatch.setattr(target, attribute, replacement)
    with tone_wav.open("rb") as handle:
        response = client.post(
            "/transcribe",
            files={"file": ("a.wav", handle, "audio/wav")},
            data={"engine": "whisperx"},
        )
    assert response.status_code == 507
    assert response.json() == {"detail": "the server has no space left for this upload"}
    assert uploads_left(settings) == []
    assert queue.count == 0
