"""Unit-tier fixtures: the API on fakeredis, settings in temporary folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
from fastapi.testclient import TestClient
from rq import Queue
from rq.serializers import JSONSerializer

from api.http.app import create_app
from api.http.deps import get_queue
from config import Settings
from tests.fakes import fake_runtime
from worker.runtime import Runtime


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with the uploads and model cache in a temporary folder."""
    return Settings(
        upload_dir=tmp_path / "uploads",
        model_cache_dir=tmp_path / "models",
        redis_port=1,
        max_file_size=256 * 1024,
    )


@pytest.fixture
def redis() -> fakeredis.FakeRedis:
    """An in-memory Redis."""
    return fakeredis.FakeRedis()


@pytest.fixture
def queue(redis: fakeredis.FakeRedis, settings: Settings) -> Queue:
    """The transcription queue on fakeredis, with the JSON serializer the service uses."""
    return Queue(settings.queue_name, connection=redis, serializer=JSONSerializer)


@pytest.fixture
def client(settings: Settings, queue: Queue) -> Iterator[TestClient]:
    """The API with its settings and queue replaced."""
    app = create_app(settings)
    app.dependency_overrides[get_queue] = lambda: queue
    with TestClient(app) as test_client:
        yield test_client


def uploads_left(settings: Settings) -> list[Path]:
    """Every file in the uploads folder, temporary ones included."""
    return sorted(settings.upload_dir.iterdir()) if settings.upload_dir.exists() else []


@pytest.fixture
def worker_settings(settings: Settings) -> Settings:
    """Settings for an in-process worker on the CPU, one retry."""
    settings.device = "cpu"
    settings.job_retries = 1
    return settings


@pytest.fixture
def runtime(worker_settings: Settings) -> Runtime:
    """A worker runtime whose engines are all the fake one."""
    return fake_runtime(worker_settings)
