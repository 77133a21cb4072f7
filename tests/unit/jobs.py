"""Jobs put straight on the queue, as the API would after an upload (for worker-side tests)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from rq import Queue
from rq.job import Job

from api.jobs import enqueue_transcription
from config import Settings


def enqueue_audio(
    queue: Queue,
    settings: Settings,
    audio: Path,
    *,
    model: str = "tiny.en",
    sleep_s: float = 0.0,
    callback_url: str | None = None,
) -> Job:
    """Copy `audio` into the uploads folder and enqueue a whisperx job for it.

    `sleep_s` makes the fake engine take that long (for cancel and stop tests).
    """
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    job_id = str(uuid.uuid4())
    target = settings.upload_dir / f"{job_id}{audio.suffix}"
    shutil.copy(audio, target)
    return enqueue_transcription(
        queue,
        settings,
        job_id=job_id,
        audio_path=str(target),
        engine="whisperx",
        model=model,
        language=None,
        duration_s=1.0,
        options={"extra": {"sleep_s": sleep_s}} if sleep_s else None,
        callback_url=callback_url,
    )
