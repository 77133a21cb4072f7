"""Model-aware routing: a queue per engine/model, and what the live workers serve, read from Redis.

A job waits on its route's queue (`common.contract.route_queue_name`); a worker listens to the
queues of the routes it serves (WORKER_MODELS, else every offered one) and also registers on
QUEUE_NAME's own queue, so rq's per-queue worker sets say both how many workers are live and
how many serve each route. A worker registers only once its PRELOAD_MODELS are loaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.utils import utcparse
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from common.catalog import Route
from common.contract import Keys, home_queue_name, route_of_queue, route_queue_name

QUEUES_KEY = Queue.redis_queues_keys
"""rq's set of every queue that has had a job (their keys)."""


def route_queue(queue: Queue, route: Route) -> Queue:
    """The queue of `route` beside `queue` (QUEUE_NAME's): same connection and serializer."""
    return Queue(
        route_queue_name(queue.name, route),
        connection=queue.connection,
        serializer=queue.serializer,
    )


def family_queue_names(connection: Redis, queue_name: str) -> list[str]:
    """QUEUE_NAME's own queue and every route queue under it that has ever had a job, sorted."""
    home = home_queue_name(queue_name)
    namespace = Queue.redis_queue_namespace_prefix
    names = {home}
    for raw in connection.smembers(QUEUES_KEY):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        name = key.removeprefix(namespace)
        if home_queue_name(name) == home and route_of_queue(name) is not None:
            names.add(name)
    return sorted(names)


def live_workers(connection: Redis, queue_name: str) -> int:
    """Workers registered on QUEUE_NAME (every ready worker of this service registers there)."""
    return int(connection.scard(WORKERS_BY_QUEUE_KEY % home_queue_name(queue_name)))


def serving(connection: Redis, queue_name: str, routes: Sequence[Route]) -> dict[Route, int]:
    """How many live workers serve each route (listen to its queue)."""
    with connection.pipeline(transaction=False) as pipeline:
        for route in routes:
            pipeline.scard(WORKERS_BY_QUEUE_KEY % route_queue_name(queue_name, route))
        counts = pipeline.execute()
    return {route: int(count) for route, count in zip(routes, counts, strict=True)}


# For each queue (ARGV in groups of five: its list, rotation, pending prefix, started registry,
# worker set), its depth (the list plus every key's waiting list), the earliest `enqueued_at`
# among the heads of those lists, its running jobs and its workers. ARGV[1]: job key prefix.
# The cost grows with queues and API keys waiting, never with the jobs queued.
_STATS = """
local out = {}
for i = 2, #ARGV, 5 do
  local queue, rotation, pending = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local depth = redis.call('LLEN', queue)
  local heads = {}
  local head = redis.call('LINDEX', queue, 0)
  if head then heads[#heads + 1] = head end
  for _, owner in ipairs(redis.call('LRANGE', rotation, 0, -1)) do
    local list = pending .. owner
    depth = depth + redis.call('LLEN', list)
    local first = redis.call('LINDEX', list, 0)
    if first then heads[#heads + 1] = first end
  end
  local oldest = ''
  for _, job_id in ipairs(heads) do
    local at = redis.call('HGET', ARGV[1] .. job_id, 'enqueued_at')
    if at and (oldest == '' or at < oldest) then oldest = at end
  end
  out[#out + 1] = {depth, oldest, redis.call('ZCARD', ARGV[i + 3]),
                   redis.call('SCARD', ARGV[i + 4])}
end
return out
"""


@dataclass(frozen=True)
class QueueStats:
    """One queue as it stands: jobs waiting, since when, jobs running, workers listening."""

    queue_name: str
    route: Route | None
    depth: int
    oldest_enqueued_at: datetime | None
    running: int
    workers: int

    def oldest_age_s(self, now: datetime | None = None) -> float:
        """Seconds the oldest waiting job has waited; 0 when none waits."""
        if self.oldest_enqueued_at is None:
            return 0.0
        moment = now or datetime.now(UTC)
        return max((moment - self.oldest_enqueued_at).total_seconds(), 0.0)


def queue_stats(connection: Redis, queue_names: Iterable[str]) -> list[QueueStats]:
    """Depth (fair-turn waiting lists included), oldest job, running jobs and workers of each
    queue, in one round trip."""
    names = list(queue_names)
    if not names:
        return []
    arguments: list[str] = [Job.redis_job_namespace_prefix]
    for name in names:
        keys = Keys(name)
        arguments += [
            keys.queue,
            keys.rotation,
            keys.pending_prefix,
            StartedJobRegistry(name, connection=connection).key,
            WORKERS_BY_QUEUE_KEY % name,
        ]
    rows = connection.eval(_STATS, 0, *arguments)
    stats: list[QueueStats] = []
    for name, (depth, oldest, running, workers) in zip(names, rows, strict=True):
        text = oldest.decode() if isinstance(oldest, bytes) else str(oldest)
        stats.append(
            QueueStats(
                queue_name=name,
                route=route_of_queue(name),
                depth=int(depth),
                oldest_enqueued_at=utcparse(text).replace(tzinfo=UTC) if text else None,
                running=int(running),
                workers=int(workers),
            )
        )
    return stats


def service_queue_names(connection: Redis, queue_name: str, routes: Iterable[Route]) -> list[str]:
    """QUEUE_NAME's own queue, the queues of `routes` (those offered) and every other route
    queue that has had jobs: what /health and the metrics report on."""
    names = set(family_queue_names(connection, queue_name))
    names.update(route_queue_name(queue_name, route) for route in routes)
    home = home_queue_name(queue_name)
    return [home, *sorted(names - {home})]
