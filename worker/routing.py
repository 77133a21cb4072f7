"""Which queues a worker listens to, and how it takes a job from several without losing one."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from redis import Redis
from rq import Queue
from rq.exceptions import DequeueTimeout, NoSuchJobError
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job

from common.catalog import Route
from common.contract import route_of_queue
from common.routing import route_queue
from config import Settings

CLAIM_POLL_S = 0.05
"""How often an idle worker of several queues looks at them again, seconds."""

# KEYS: queue keys in the order to try. The first job found moves, atomically, from its queue to
# that queue's intermediate list, as rq's own single-queue dequeue (BLMOVE) does; a worker that
# dies next leaves it there, where maintenance finds it (worker.maintenance.requeue_stranded).
_CLAIM = """
for _, key in ipairs(KEYS) do
  local job_id = redis.call('LMOVE', key, key .. ':intermediate', 'LEFT', 'RIGHT')
  if job_id then return {key, job_id} end
end
return false
"""


class UnservableRoutes(ValueError):
    """WORKER_MODELS or PRELOAD_MODELS name an engine/model this server does not offer."""


def served_routes(settings: Settings) -> list[Route]:
    """The engine/model pairs this worker serves: WORKER_MODELS, else every offered pair.

    Raises UnservableRoutes for a pair the catalogue does not offer, or a PRELOAD_MODELS pair
    outside WORKER_MODELS.
    """
    catalogue = settings.catalogue()
    chosen = list(dict.fromkeys(settings.worker_models)) or catalogue.routes()
    unknown = [route.id for route in chosen if not catalogue.offers(route)]
    if unknown:
        raise UnservableRoutes(
            f"WORKER_MODELS names {unknown}, which this server does not offer (see MODELS and "
            "ALLOWED_MODELS)"
        )
    outside = [route.id for route in settings.preload_models if route not in chosen]
    if outside:
        raise UnservableRoutes(
            f"PRELOAD_MODELS names {outside}, which this worker does not serve (WORKER_MODELS)"
        )
    return chosen


def worker_queues(queue: Queue, routes: Iterable[Route]) -> list[Queue]:
    """The queues of `routes`, then QUEUE_NAME's own (`queue`): a worker registers on every one
    (so /health counts it once there), and takes jobs from the route queues only."""
    return [*(route_queue(queue, route) for route in routes), queue]


class RoutedQueue(Queue):
    """rq's Queue, whose dequeue across several queues loses no job (see `_CLAIM`).

    rq takes from several queues with BLPOP, which leaves a job in no list at all between the
    pop and its start; from one queue it uses BLMOVE into an intermediate list, as here. Jobs
    are taken from route queues only: QUEUE_NAME's own holds none (a job queued there by an
    older version is moved to its route's queue by maintenance).
    """

    @classmethod
    def dequeue_any(
        cls,
        queues: Iterable[Queue],
        timeout: int | None,
        connection: Redis,
        job_class: type[Job] | None = None,
        serializer: Any = None,
        death_penalty_class: Any = None,
    ) -> tuple[Job, Queue] | None:
        """The first job of `queues` in order, waiting up to `timeout` seconds (None: not at
        all); raises rq's DequeueTimeout when the wait ends without one."""
        routed = [queue for queue in queues if route_of_queue(queue.name) is not None]
        if len(routed) <= 1:
            return super().dequeue_any(
                routed or list(queues),
                timeout,
                connection=connection,
                job_class=job_class,
                serializer=serializer,
                death_penalty_class=death_penalty_class,
            )
        keys = [queue.key for queue in routed]
        deadline = None if timeout is None else time.monotonic() + timeout
        job_cls = job_class or Job
        while True:
            claimed = connection.eval(_CLAIM, len(keys), *keys)
            if claimed:
                key, job_id = (_text(item) for item in claimed)
                queue = cls.from_queue_key(
                    key,
                    connection=connection,
                    job_class=job_cls,
                    serializer=serializer,
                    death_penalty_class=death_penalty_class,
                )
                try:
                    job = job_cls.fetch(job_id, connection=connection, serializer=serializer)
                except NoSuchJobError:  # gone meanwhile, as rq's own dequeue skips it
                    connection.lrem(IntermediateQueue.get_intermediate_queue_key(key), 1, job_id)
                    continue
                return job, queue
            if deadline is None:
                return None
            if time.monotonic() >= deadline:
                raise DequeueTimeout(timeout, keys)
            time.sleep(CLAIM_POLL_S)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
