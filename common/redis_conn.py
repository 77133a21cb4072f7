"""One way to open Redis from the settings, for the API and the worker alike."""

from __future__ import annotations

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from config import Settings


def connect_redis(settings: Settings) -> Redis:
    """A Redis client (lazy: the first command connects) with bounded timeouts."""
    if settings.redis_url:
        return Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=settings.redis_timeout_s,
            socket_timeout=settings.redis_timeout_s,
            health_check_interval=30,
        )
    return Redis(
        host=settings.redis_host,
        port=settings.redis_port,
        password=settings.redis_password,
        db=settings.redis_db,
        socket_connect_timeout=settings.redis_timeout_s,
        socket_timeout=settings.redis_timeout_s,
        health_check_interval=30,
    )


def connect_async_redis(settings: Settings, read_timeout_s: float) -> AsyncRedis:
    """An asyncio Redis client for blocking reads that may last up to `read_timeout_s`."""
    if settings.redis_url:
        return AsyncRedis.from_url(
            settings.redis_url,
            socket_connect_timeout=settings.redis_timeout_s,
            socket_timeout=read_timeout_s,
        )
    return AsyncRedis(
        host=settings.redis_host,
        port=settings.redis_port,
        password=settings.redis_password,
        db=settings.redis_db,
        socket_connect_timeout=settings.redis_timeout_s,
        socket_timeout=read_timeout_s,
    )
