"""One way to open Redis from the settings, for the API and the worker alike.

With REDIS_SENTINELS the clients ask the Sentinels where the master is, on every new
connection: after a failover, the first command that fails on the old master drops its
connection and the next one goes to the promoted replica, with no restart (redis-py's
SentinelConnectionPool; rq takes such a client as its connection like any other).
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import Sentinel

from config import Settings


def _password(settings: Settings) -> str | None:
    return settings.redis_password.get_secret_value() if settings.redis_password else None


def _address(settings: Settings) -> dict[str, Any]:
    """Where Redis is, when REDIS_URL does not say it."""
    return {
        "host": settings.redis_host,
        "port": settings.redis_port,
        "password": _password(settings),
        "db": settings.redis_db,
    }


def _sentinels(settings: Settings) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The Sentinels' addresses, and how to talk to them (their own password, the timeouts)."""
    addresses = []
    for address in settings.redis_sentinels:
        host, _, port = address.rpartition(":")
        addresses.append((host.strip("[]"), int(port)))
    password = settings.redis_sentinel_password
    options: dict[str, Any] = {
        "socket_connect_timeout": settings.redis_timeout_s,
        "socket_timeout": settings.redis_timeout_s,
        "password": password.get_secret_value() if password else None,
    }
    return addresses, options


def connect_redis(settings: Settings) -> Redis:
    """A Redis client (lazy: the first command connects) with bounded timeouts: the master the
    Sentinels name when REDIS_SENTINELS is set, else REDIS_URL, else REDIS_HOST/PORT."""
    timeouts: dict[str, Any] = {
        "socket_connect_timeout": settings.redis_timeout_s,
        "socket_timeout": settings.redis_timeout_s,
        "health_check_interval": 30,
    }
    if settings.redis_sentinels:
        addresses, options = _sentinels(settings)
        sentinel = Sentinel(addresses, sentinel_kwargs=options)  # type: ignore[no-untyped-call]
        master: Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            settings.redis_sentinel_master,
            password=_password(settings),
            db=settings.redis_db,
            **timeouts,
        )
        return master
    if settings.redis_url:
        return Redis.from_url(settings.redis_url.get_secret_value(), **timeouts)
    return Redis(**_address(settings), **timeouts)


def connect_async_redis(settings: Settings, read_timeout_s: float) -> AsyncRedis:
    """An asyncio Redis client for blocking reads that may last up to `read_timeout_s`, found
    as `connect_redis` finds its server."""
    timeouts: dict[str, Any] = {
        "socket_connect_timeout": settings.redis_timeout_s,
        "socket_timeout": read_timeout_s,
    }
    if settings.redis_sentinels:
        addresses, options = _sentinels(settings)
        found = AsyncSentinel(addresses, sentinel_kwargs=options)  # type: ignore[no-untyped-call]
        master: AsyncRedis = found.master_for(
            settings.redis_sentinel_master,
            password=_password(settings),
            db=settings.redis_db,
            **timeouts,
        )
        return master
    if settings.redis_url:
        return AsyncRedis.from_url(settings.redis_url.get_secret_value(), **timeouts)
    return AsyncRedis(**_address(settings), **timeouts)


def replicas_hold(connection: Redis, settings: Settings, marker_key: str) -> bool:
    """Whether REDIS_MIN_REPLICAS replicas hold every write this process made before the call,
    waiting up to REDIS_MIN_REPLICAS_TIMEOUT_S for them (Redis WAIT); True at once with 0.

    WAIT counts the replicas that acknowledged the latest write of the connection it runs on,
    and redis-py lends each command a connection from its pool, so the writes to wait for may
    have gone out on another one. Hence a write of `marker_key` on WAIT's own connection first
    (one pipeline, so one connection): it comes after all of them in the replication stream,
    and a replica that acknowledged it holds them too.
    """
    wanted = settings.redis_min_replicas
    if wanted == 0:
        return True
    with connection.pipeline(transaction=False) as pipeline:
        pipeline.set(marker_key, b"1")
        pipeline.wait(wanted, int(settings.redis_min_replicas_timeout_s * 1000))
        _, acknowledged = pipeline.execute()
    return int(acknowledged) >= wanted
