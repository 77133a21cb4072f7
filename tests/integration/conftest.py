"""One real deployment (redis-server, API, one worker) shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.services import Service, free_port, running_service, service_env

KEYED_ADMIN = "integration-admin-key"
"""ADMIN_API_KEY of the keyed deployment."""


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
    root = tmp_path_factory.mktemp("keys")
    port = free_port()
    env = {**service_env(root, port), "REQUIRE_API_KEY": "true", "ADMIN_API_KEY": KEYED_ADMIN}
    service = Service(root=root, env=env, redis_port=port)
    try:
        service.start_redis()
        service.start_worker()
        service.start_api(web_workers=2)
        service.wait_for_workers(1)
        yield service
    finally:
        service.stop()
