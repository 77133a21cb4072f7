"""Fair turns across API keys: each key's jobs wait in a list of their own, and one at a time
moves onto the RQ queue, key after key, so one key's backlog cannot starve another's jobs.

Both moves are Lua scripts, atomic in Redis: a job is always in exactly one of its key's list
or the RQ queue. Without keys (no owner) jobs go straight onto the RQ queue, as before.
"""

from __future__ import annotations

from redis import Redis
from redis.client import Pipeline

from common.contract import Keys

QUEUE_DEPTH = 1
"""How many jobs wait on the RQ queue itself; the rest wait their key's turn."""

# KEYS: the key's pending list, the rotation of keys with pending jobs. ARGV: job id, owner.
_HOLD = """
redis.call('RPUSH', KEYS[1], ARGV[1])
if not redis.call('LPOS', KEYS[2], ARGV[2]) then redis.call('RPUSH', KEYS[2], ARGV[2]) end
return 1
"""

# KEYS: the rotation, the RQ queue. ARGV: depth, pending-list prefix.
_FEED = """
local depth = redis.call('LLEN', KEYS[2])
local moved = 0
while depth < tonumber(ARGV[1]) do
  local owner = redis.call('LPOP', KEYS[1])
  if not owner then break end
  local pending = ARGV[2] .. owner
  local job_id = redis.call('LPOP', pending)
  if job_id then
    redis.call('RPUSH', KEYS[2], job_id)
    depth = depth + 1
    moved = moved + 1
  end
  if redis.call('LLEN', pending) > 0 then redis.call('RPUSH', KEYS[1], owner) end
end
return moved
"""


def hold(pipeline: Pipeline, keys: Keys, owner: str, job_id: str) -> None:
    """In the enqueue's own transaction: take the job rq just pushed off the RQ queue and put
    it at the end of its key's list."""
    pipeline.lrem(keys.queue, 1, job_id)
    pipeline.eval(_HOLD, 2, keys.pending(owner), keys.rotation, job_id, owner)


def feed(connection: Redis, queue_name: str) -> int:
    """Move jobs onto the RQ queue, one per key in turn, until it holds QUEUE_DEPTH; how many."""
    keys = Keys(queue_name)
    moved = connection.eval(_FEED, 2, keys.rotation, keys.queue, QUEUE_DEPTH, keys.pending_prefix)
    return int(moved)


def withdraw(connection: Redis, queue_name: str, owner: str, job_id: str) -> None:
    """Take a canceled job out of its key's list (its key leaves the rotation when empty)."""
    connection.lrem(Keys(queue_name).pending(owner), 1, job_id)


def waiting(connection: Redis, queue_name: str) -> int:
    """Jobs waiting their key's turn, off the RQ queue."""
    keys = Keys(queue_name)
    owners = [_text(owner) for owner in connection.lrange(keys.rotation, 0, -1)]
    return sum(int(connection.llen(keys.pending(owner))) for owner in set(owners))


def place(connection: Redis, queue_name: str, owner: str, job_id: str) -> int | None:
    """0-based place of a waiting job among those still to reach the RQ queue, or None when it
    is not waiting: keys take turns in rotation order, one job each per round."""
    keys = Keys(queue_name)
    found = connection.lpos(keys.pending(owner), job_id)
    if not isinstance(found, int):
        return None
    rotation = [_text(name) for name in connection.lrange(keys.rotation, 0, -1)]
    if owner not in rotation:
        return None
    mine = rotation.index(owner)
    before = 0
    for turn, other in enumerate(rotation):
        length = int(connection.llen(keys.pending(other)))
        # Each key gives one job per round: `found` rounds come first, then this round's turns.
        before += min(length, found) + (1 if turn < mine and length > found else 0)
    return before


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
