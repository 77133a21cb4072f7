"""One real deployment (redis-server, API, one worker) shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.services import Service, running_service


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """redis-server, `python -m worker` and the API under gunicorn, on loopback."""
    with running_service(tmp_path_factory.mktemp("service")) as running:
        yield running


@pytest.fixture
def client(service: Service) -> Iterator[httpx.Client]:
    """An HTTP client for the shared deployment."""
    with httpx.Client(base_url=service.url, timeout=60) as http:
        yield http


@pytest.fixture(scope="session")
def keyed_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A deployment with REQUIRE_API_KEY on: a worker and the API with 2 gunicorn processes."""
    with running_service(tmp_path_factory.mktemp("keys"), web_workers=2, keyed=True) as running:
        yield running
