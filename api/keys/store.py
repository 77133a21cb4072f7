"""API keys in Redis, kept as their SHA-256 (never the key itself): create, find, list, revoke."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime

from pydantic import BaseModel, Field
from redis import Redis
from redis.exceptions import WatchError

from common.contract import Keys

KEY_PREFIX = "tsk_"
"""What every key this service makes starts with (so a leaked one is easy to search for)."""

ADMIN_NAME = "admin"
"""The name of the ADMIN_API_KEY key; no created key may take it."""

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class KeyRefused(ValueError):
    """A key cannot be created or revoked as asked; the message says why."""


class KeyLimits(BaseModel):
    """A key's own limits; None takes the server's default (DEFAULT_*), 0 is unlimited."""

    rate_per_min: int | None = Field(default=None, ge=0)
    max_active: int | None = Field(default=None, ge=0)
    audio_hours_per_day: float | None = Field(default=None, ge=0)


class ApiKey(BaseModel):
    """What is known of a key: never the key itself."""

    name: str
    admin: bool = False
    created_at: datetime
    limits: KeyLimits = Field(default_factory=KeyLimits)


def digest(secret: str) -> str:
    """The SHA-256 a key is stored under (keys are random, so no slow hash is needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    """The API keys of one deployment, in the queue's Redis."""

    def __init__(self, connection: Redis, queue_name: str) -> None:
        self._redis = connection
        keys = Keys(queue_name)
        self._by_digest = keys.api_keys
        self._by_name = keys.api_key_names
        self._last_used = keys.api_key_last_used

    def create(self, name: str, *, admin: bool = False, limits: KeyLimits | None = None) -> str:
        """Make a key named `name` and return it (the only time it is seen).

        Raises KeyRefused for a name already taken, reserved or malformed.
        """
        if not NAME_PATTERN.match(name):
            raise KeyRefused(f"{name!r} is not a key name: 1-64 letters, digits, '.', '_' or '-'")
        if name == ADMIN_NAME:
            raise KeyRefused(f"{ADMIN_NAME!r} is reserved for ADMIN_API_KEY")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        record = ApiKey(
            name=name, admin=admin, created_at=datetime.now(UTC), limits=limits or KeyLimits()
        ).model_dump_json()
        with self._redis.pipeline() as pipeline:
            try:
                pipeline.watch(self._by_name)  # type: ignore[no-untyped-call]
                if pipeline.hexists(self._by_name, name):
                    raise KeyRefused(f"a key named {name!r} exists already")
                pipeline.multi()
                pipeline.hset(self._by_name, name, digest(secret))
                pipeline.hset(self._by_digest, digest(secret), record)
                pipeline.execute()
            except WatchError:
                raise KeyRefused(
                    f"a key named {name!r} was being created at the same time"
                ) from None
        return secret

    def find(self, secret: str) -> ApiKey | None:
        """The key `secret` is, or None when it is unknown or revoked."""
        raw = self._redis.hget(self._by_digest, digest(secret))
        return None if raw is None else ApiKey.model_validate_json(raw)

    def touch(self, name: str) -> None:
        """Record that the key was used now."""
        self._redis.hset(self._last_used, name, datetime.now(UTC).isoformat())

    def list(self) -> list[tuple[ApiKey, str | None]]:
        """Every key with when it was last used (ISO time, or None), by name."""
        used = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in self._redis.hgetall(self._last_used).items()
        }
        keys = [ApiKey.model_validate_json(raw) for raw in self._redis.hvals(self._by_digest)]
        return [(key, used.get(key.name)) for key in sorted(keys, key=lambda key: key.name)]

    def revoke(self, name: str) -> None:
        """Remove the key named `name`; raises KeyRefused when there is none."""
        hashed = self._redis.hget(self._by_name, name)
        if hashed is None:
            raise KeyRefused(f"there is no key named {name!r}")
        with self._redis.pipeline() as pipeline:
            pipeline.hdel(self._by_digest, hashed)
            pipeline.hdel(self._by_name, name)
            pipeline.hdel(self._last_used, name)
            pipeline.execute()
