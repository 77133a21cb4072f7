"""Recordings in the containers added for users' folders are transcribed by the real stack."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.audio import JFK, JFK_PHRASE, normalize
from tests.hostile import in_container
from tests.services import submit, wait_for_job

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("extension", "engine"),
    [("aiff", "whisperx"), ("mkv", "whisperx"), ("amr", "timestamped")],
    ids=["aiff", "mkv with video", "amr"],
)
def test_recording_is_transcribed(
    extension: str, engine: str, tmp_path: Path, client: httpx.Client
) -> None:
    recording = in_container(JFK, tmp_path / f"jfk.{extension}", 11.0)
    status = wait_for_job(client, submit(client, recording, engine))
    assert status["status"] == "finished", status
    assert JFK_PHRASE in normalize(status["result"]["text"])
