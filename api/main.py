"""The ASGI application, `api.main:app`: the factory's app for the environment's settings."""

from __future__ import annotations

from api.http.app import create_app
from config import get_settings

app = create_app(get_settings())
