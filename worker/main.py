"""`python -m worker`: build the runtime and the RQ worker from the environment, then work."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import StopRequested
from rq.serializers import JSONSerializer

from common.redis_conn import connect_redis
from config import get_settings
from worker import metrics
from worker.engines.base import ModelLoadError
from worker.maintenance import start_maintenance_thread
from worker.routing import UnservableRoutes, served_routes, worker_queues
from worker.rq_worker import TranscriptionWorker
from worker.runtime import Runtime, start_idle_unloader
from worker.webhooks import start_webhook_thread

log = logging.getLogger(__name__)


def main() -> int:
    """Serve the transcription queue until SIGTERM/SIGINT: the worker's composition root."""
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s [worker pid %(process)d] %(message)s",
    )
    try:
        routes = served_routes(settings)
    except UnservableRoutes as error:
        log.error("cannot start: %s", error)
        return 2
    try:
        runtime = Runtime.from_settings(settings)
    except ValueError as error:  # DEVICE=cuda:N for a GPU this process cannot see
        log.error("cannot start: %s", error)
        return 2
    log.info(
        "worker starting: device=%s compute_type=%s threads=%d queue=%s serving=%s",
        runtime.device,
        runtime.compute_type,
        runtime.context.cpu_threads,
        settings.queue_name,
        ",".join(route.id for route in settings.worker_models) or "every offered model",
    )
    _limit_torch_threads(runtime.context.cpu_threads)
    if settings.worker_metrics_port:
        gpu = metrics.cuda_memory if runtime.device == "cuda" else None
        metrics.serve_metrics(settings.worker_metrics_port, runtime.cache.loaded, gpu)
    connection = connect_redis(settings)
    queue = Queue(settings.queue_name, connection=connection, serializer=JSONSerializer)
    stop = threading.Event()
    start_maintenance_thread(queue, settings, stop)
    start_webhook_thread(queue, settings, stop)
    try:
        # Not registered (so neither counted nor routed to) until the preloads are in.
        runtime.preload(settings.preload_models)
    except ModelLoadError as error:
        log.error("cannot start: PRELOAD_MODELS: %s", error)
        stop.set()
        return 2
    start_idle_unloader(runtime, stop)
    metrics.WORKER_READY.set(1)
    try:
        work_until_stopped(worker_queues(queue, routes), runtime)
    finally:
        stop.set()
    return 0


def work_until_stopped(queues: list[Queue], runtime: Runtime) -> None:
    """Run rq workers on `queues` until SIGTERM/SIGINT; when one quits on a Redis failure, wait
    for Redis and start another (the warm models stay: they live in this process, not in the rq
    worker)."""
    stopping = threading.Event()
    connection = queues[0].connection
    while not stopping.is_set():
        worker = TranscriptionWorker(
            queues, connection=connection, serializer=JSONSerializer, runtime=runtime
        )
        try:
            worker.work(logging_level=runtime.settings.log_level, with_scheduler=True)
        except StopRequested:
            return
        except RedisError as error:
            log.error("the worker loop stopped on a Redis error: %s", error)
        if worker.shutdown_requested:
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda _signum, _frame: stopping.set())
        log.warning("the worker loop ended without a stop request; restarting once Redis answers")
        wait_for_redis(connection, stopping)
        forget(worker)


def forget(worker: TranscriptionWorker) -> None:
    """Unregister an rq worker whose loop ended on a Redis failure: it could not say so then,
    and a registration that outlived it (or came back with a failover) would count one worker
    too many in /health and routing until its key expired (minutes)."""
    try:
        worker.register_death()  # type: ignore[no-untyped-call]
    except RedisError as error:
        log.warning("could not unregister the previous worker loop %s: %s", worker.name, error)


def wait_for_redis(connection: Redis, stopping: threading.Event) -> None:
    """Return once Redis answers PING, or once `stopping` is set."""
    delay_s = 0.5
    while not stopping.is_set():
        try:
            connection.ping()
        except RedisError as error:
            log.warning("Redis is not answering (%s); retrying in %.1f s", error, delay_s)
            stopping.wait(delay_s)
            delay_s = min(delay_s * 2, 5.0)
        else:
            return


def _limit_torch_threads(threads: int) -> None:
    import torch  # the worker's own heavy import, once at start

    torch.set_num_threads(threads)


if __name__ == "__main__":
    sys.exit(main())
