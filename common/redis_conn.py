"""One way to open Redis from the settings, for the API and the worker alike."""

from __future__ import annotations

from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from config import Settings


def _address(settings: Settings) -> dict[str, Any]:
    """Where Redis is, when REDIS_URL does not say it."""
    return {
        "host": settings.redis_host,
        "port": settings.redis_port,
        "password": settings.redis_password.get_secret_value() if settings.redis_password else None,
        "db": settings.redis_db,
    }


def connect_redis(settings: Settings) -> Redis:
    """A Redis client (lazy: the first command connects) with bounded timeouts."""
    timeouts: dict[str, Any] = {
        "socket_connect_timeout": settings.redis_timeout_s,
        "socket_timeout": settings.redis_timeout_s,
        "health_check_interval": 30,
    }
    if settings.redis_url:
        return Redis.from_url(settings.redis_url.get_secret_value(), **timeouts)
    return Redis(**_address(settings), **timeouts)


def connect_async_redis(settings: Settings, read_timeout_s: float) -> AsyncRedis:
    """An asyncio Redis client for blocking reads that may last up to `read_timeout_s`."""
    timeouts: dict[str, Any] = {
        "socket_connect_timeout": settings.redis_timeout_s,
        "socket_timeout": read_timeout_s,
    }
    if settings.redis_url:
        return AsyncRedis.from_url(settings.redis_url.get_secret_value(), **timeouts)
    return AsyncRedis(**_address(settings), **timeouts)
