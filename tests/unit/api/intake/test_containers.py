"""Every accepted extension, in a file ffmpeg made: probed as audio, and accepted at upload."""

from __future__ import annotations

import asyncio
from pathlib import Path

import av
import pytest
from fastapi.testclient import TestClient
from rq import Queue

from api.intake import pyav_helper
from api.intake.multipart import ALLOWED_EXTENSIONS
from api.intake.probe import probe_audio
from common.contract import load_job
from common.media import ALLOWED_DEMUXERS
from config import Settings
from tests.audio import JFK
from tests.hostile import in_container

SECONDS = 2.0
VIDEO_CONTAINERS = ("mov", "m4v", "mkv", "avi", "wmv")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two seconds of jfk.flac in every accepted container, named by its extension."""
    folder = tmp_path_factory.mktemp("containers")
    return {
        extension: in_container(JFK, folder / f"jfk.{extension}", SECONDS)
        for extension in sorted(ALLOWED_EXTENSIONS)
    }


@pytest.mark.parametrize("with_pyav", [True, False], ids=["pyav", "ffprobe"])
@pytest.mark.parametrize("extension", sorted(ALLOWED_EXTENSIONS))
def test_each_container_is_read_as_audio(
    extension: str, with_pyav: bool, made: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not with_pyav:
        monkeypatch.setattr(pyav_helper, "available", lambda: False)
    info = asyncio.run(probe_audio(made[extension], 30.0))
    assert set(info.format_name.split(",")) & set(ALLOWED_DEMUXERS)
    assert info.duration_s == pytest.approx(SECONDS, abs=0.3)


@pytest.mark.parametrize("extension", sorted(ALLOWED_EXTENSIONS))
def test_each_container_is_accepted_at_upload(
    extension: str, made: dict[str, Path], client: TestClient, queue: Queue, settings: Settings
) -> None:
    settings.max_file_size = 8 * 1024 * 1024
    with made[extension].open("rb") as handle:
        response = client.post(
            "/transcribe",
            files={"file": (f"recording.{extension.upper()}", handle)},
            data={"engine": "whisperx"},
        )
    assert response.status_code == 200, response.text
    job = load_job(queue, response.json()["job_id"])
    assert job is not None
    assert Path(job.kwargs["audio_path"]).suffix == f".{extension}"


def test_the_video_containers_carry_video(made: dict[str, Path]) -> None:
    """The video containers are tested as people have them: a video track beside the audio."""
    for extension in VIDEO_CONTAINERS:
        assert extension in ALLOWED_EXTENSIONS
        with av.open(str(made[extension])) as container:
            kinds = {stream.type for stream in container.streams}
        assert {"audio", "video"} <= kinds, extension
