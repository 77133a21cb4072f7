"""GET /livez: the liveness probe answers without touching Redis."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.http.app import create_app
from config import Settings


def test_livez_answers_while_redis_is_unreachable(settings: Settings) -> None:
    app = create_app(settings)  # Redis on port 1: nothing there
    with TestClient(app) as client:
        assert client.get("/livez").json() == {"status": "ok"}
        assert client.get("/health").status_code == 503
