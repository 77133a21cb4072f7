"""FastAPI dependencies: settings and the queue, as Annotated aliases that tests override."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from rq import Queue

from config import Settings, get_settings

SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_queue(request: Request) -> Queue:
    """The transcription queue opened by the app's lifespan."""
    queue: Queue = request.app.state.queue
    return queue


QueueDep = Annotated[Queue, Depends(get_queue)]
