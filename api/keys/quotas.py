"""Per-key quotas, checked atomically in Redis so that every API process enforces one limit.

Requests per minute use the `limits` library (a moving window in Redis); jobs queued or
running are a per-key set of job ids, reserved by a Lua script and left by the job-end path;
audio per UTC day is a per-key, per-date counter charged by a Lua script.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from limits import RateLimitItemPerMinute
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis import Redis
from rq.job import Job

from api.errors import ServiceError
from api.keys.store import KeyLimits
from common.contract import Keys
from config import Settings

ACTIVE_RETRY_AFTER_S = 10
"""Retry-After past the active-jobs limit: when one of the key's jobs is likely to have ended."""

# Reserve a place among the key's active jobs, unless they are `max` already.
RESERVE_ACTIVE = """
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
"""

# Charge seconds of audio to today's counter, unless the limit would be passed; the counter
# outlives its day by one.
CHARGE_AUDIO = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return tostring(used) end
redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], 172800)
return false
"""


@dataclass(frozen=True)
class Limits:
    """A key's limits in force; 0 is unlimited."""

    rate_per_min: int = 0
    max_active: int = 0
    audio_s_per_day: float = 0.0

    @classmethod
    def of(cls, own: KeyLimits, settings: Settings) -> Limits:
        """The key's own limits where it has them, else the server's defaults."""

        def pick(value: float | None, default: float) -> float:
            return default if value is None else value

        hours = pick(own.audio_hours_per_day, settings.default_audio_hours_per_day)
        return cls(
            rate_per_min=int(pick(own.rate_per_min, settings.default_rate_per_min)),
            max_active=int(pick(own.max_active, settings.default_max_active_jobs)),
            audio_s_per_day=hours * 3600.0,
        )


def too_many(detail: str, retry_after_s: float) -> ServiceError:
    """The 429 for a limit, with Retry-After in whole seconds (at least 1)."""
    return ServiceError(429, detail, {"Retry-After": str(max(1, math.ceil(retry_after_s)))})


@lru_cache(maxsize=16)
def _rate_limiter(connection: Redis, prefix: str) -> MovingWindowRateLimiter:
    storage = RedisStorage(
        "redis://", connection_pool=connection.connection_pool, key_prefix=prefix
    )
    return MovingWindowRateLimiter(storage)


class Quotas:
    """The quotas of one deployment's keys, in the queue's Redis."""

    def __init__(self, connection: Redis, queue_name: str) -> None:
        self._redis = connection
        self._keys = Keys(queue_name)

    def hit_rate(self, owner: str, per_min: int) -> None:
        """Count one request of `owner`; a 429 past `per_min` requests in the last minute."""
        if per_min <= 0:
            return
        item = RateLimitItemPerMinute(per_min)
        limiter = _rate_limiter(self._redis, f"{self._keys.prefix}:rate")
        if limiter.hit(item, owner):
            return
        reset_at, _ = limiter.get_window_stats(item, owner)
        raise too_many(
            f"rate limit: {per_min} requests per minute for key {owner!r}",
            reset_at - time.time(),
        )

    def reserve_active(self, owner: str, job_id: str, max_active: int, stale_s: float) -> bool:
        """Take a place among `owner`'s active jobs for `job_id`; a 429 when there are
        `max_active` already. Returns whether a place was taken (False: no limit).

        Places whose job never came to exist (its request died) free themselves after
        `stale_s`; the others are left by the job-end path.
        """
        if max_active <= 0:
            return False
        key = self._keys.active(owner)
        now = time.time()
        for member in self._redis.zrangebyscore(key, "-inf", now - stale_s):
            other = member.decode() if isinstance(member, bytes) else str(member)
            if not self._redis.exists(Job.key_for(other)):
                self._redis.zrem(key, other)
        if self._redis.eval(RESERVE_ACTIVE, 1, key, job_id, now, max_active):
            return True
        raise too_many(
            f"active jobs limit: {max_active} jobs queued or running at once for key {owner!r}",
            ACTIVE_RETRY_AFTER_S,
        )

    def release_active(self, owner: str, job_id: str) -> None:
        """Give back a place taken for a job that was not made."""
        self._redis.zrem(self._keys.active(owner), job_id)

    def charge_audio(self, owner: str, seconds: float, limit_s: float) -> bool:
        """Charge `seconds` of audio to `owner`'s UTC day; a 429 when that would pass
        `limit_s`. Returns whether anything was charged (False: no limit)."""
        if limit_s <= 0:
            return False
        now = datetime.now(UTC)
        key = self._keys.audio_used(owner, now.date().isoformat())
        used = self._redis.eval(CHARGE_AUDIO, 1, key, seconds, limit_s)
        if used is None:
            return True
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
        raise too_many(
            f"audio limit: {limit_s / 3600:g} hours of audio per UTC day for key {owner!r} "
            f"({float(used) / 3600:.2f} used, this file is {seconds / 3600:.2f})",
            (midnight - now).total_seconds(),
        )

    def refund_audio(self, owner: str, seconds: float) -> None:
        """Take back seconds charged for a job that was not made."""
        day = datetime.now(UTC).date().isoformat()
        self._redis.incrbyfloat(self._keys.audio_used(owner, day), -seconds)


class Admission:
    """One request's use of its key's quotas: a place among the active jobs, then the day's
    audio; whatever was taken is given back unless the job is made (`admitted`)."""

    def __init__(self, quotas: Quotas, owner: str, limits: Limits, stale_s: float) -> None:
        self._quotas = quotas
        self._owner = owner
        self._limits = limits
        self._stale_s = stale_s
        self._job_id: str | None = None
        self._charged_s = 0.0

    def reserve(self, job_id: str) -> None:
        """A place among the key's active jobs for `job_id` (a 429 when there is none)."""
        if self._quotas.reserve_active(self._owner, job_id, self._limits.max_active, self._stale_s):
            self._job_id = job_id

    def charge(self, seconds: float) -> None:
        """The file's seconds of audio against the key's day (a 429 past the limit)."""
        if self._quotas.charge_audio(self._owner, seconds, self._limits.audio_s_per_day):
            self._charged_s = seconds

    def give_back(self) -> None:
        """No job was made: free the place and refund the audio."""
        if self._job_id is not None:
            self._quotas.release_active(self._owner, self._job_id)
        if self._charged_s:
            self._quotas.refund_audio(self._owner, self._charged_s)
