"""`python -m worker`: build the runtime and the RQ worker from the environment, then work."""

from __future__ import annotations

import logging
import sys
import threading

from rq import Queue
from rq.serializers import JSONSerializer

from common.redis_conn import connect_redis
from config import get_settings
from worker.rq_worker import TranscriptionWorker, start_maintenance_thread
from worker.runtime import Runtime, install_runtime

log = logging.getLogger(__name__)


def main() -> int:
    """Serve the transcription queue until SIGTERM/SIGINT."""
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s [worker pid %(process)d] %(message)s",
    )
    runtime = Runtime.from_settings(settings)
    install_runtime(runtime)
    log.info(
        "worker starting: device=%s compute_type=%s threads=%d queue=%s",
        runtime.device,
        runtime.compute_type,
        runtime.context.cpu_threads,
        settings.queue_name,
    )
    _limit_torch_threads(runtime.context.cpu_threads)
    connection = connect_redis(settings)
    queue = Queue(settings.queue_name, connection=connection, serializer=JSONSerializer)
    worker = TranscriptionWorker(
        [queue], connection=connection, serializer=JSONSerializer, settings=settings
    )
    stop = threading.Event()
    start_maintenance_thread(queue, settings, stop)
    try:
        worker.work(logging_level=settings.log_level.upper(), with_scheduler=True)
    finally:
        stop.set()
    return 0


def _limit_torch_threads(threads: int) -> None:
    import torch  # the worker's own heavy import, once at start

    torch.set_num_threads(threads)


if __name__ == "__main__":
    sys.exit(main())
