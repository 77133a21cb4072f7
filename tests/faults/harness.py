"""Fault injection on a running deployment (tests.services): kill, stop and restart its parts."""

from __future__ import annotations

import signal
import time
from typing import Any

import httpx
from redis import Redis

from tests.audio import SHARED_DATA
from tests.services import Proc, Service, wait_until

MULTILINGUAL = SHARED_DATA / "multilingual.mp3"
"""60 s of speech: about 5 s of work for a warm tiny.en worker on this machine's CPU."""

FAST_RECOVERY_ENV = {
    "HEARTBEAT_INTERVAL_S": "1",
    "HEARTBEAT_TTL_S": "5",
    "MAINTENANCE_INTERVAL_S": "1",
    "WHISPERX_ALIGN": "false",
}
"""Worker settings that find an abandoned job within seconds, to keep fault tests short."""


def redis_of(service: Service) -> Redis:
    """A client of the deployment's Redis."""
    return Redis(host="127.0.0.1", port=service.redis_port, socket_timeout=5, decode_responses=True)


def worker_running(service: Service, job_id: str) -> Proc | None:
    """The live worker process that is running `job_id` now, from rq's own records."""
    redis = redis_of(service)
    try:
        status, worker_name = redis.hmget(f"rq:job:{job_id}", ["status", "worker_name"])
        if status != "started" or not worker_name:
            return None
        name = worker_name.decode() if isinstance(worker_name, bytes) else str(worker_name)
        pid = redis.hget(f"rq:worker:{name}", "pid")
    finally:
        redis.close()
    if pid is None:
        return None
    return next(
        (proc for proc in service.workers if proc.alive() and proc.popen.pid == int(pid)), None
    )


def wait_for_worker_running(service: Service, job_id: str, timeout_s: float = 120) -> Proc:
    """Wait until some live worker runs `job_id`; returns it."""
    proc: Proc = wait_until(
        lambda: worker_running(service, job_id), timeout_s, f"a worker to run {job_id}", 0.1
    )
    return proc


def status_of(client: httpx.Client, job_id: str) -> dict[str, Any]:
    """GET /status/{job_id} as JSON (asserting 200)."""
    response = client.get(f"/status/{job_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def kill_redis(service: Service) -> None:
    """kill -9 redis-server: no shutdown, no final AOF rewrite."""
    assert service.redis is not None
    service.redis.signal_group(signal.SIGKILL)
    service.redis.popen.wait(10)


def restart_redis(service: Service) -> None:
    """Start redis-server again on the same port and data folder (it reloads the AOF)."""
    service.start_redis()


def kill_worker_group(proc: Proc) -> None:
    """kill -9 a worker's whole process group, as a container kill does."""
    proc.signal_group(signal.SIGKILL)
    proc.popen.wait(10)


def terminate(proc: Proc) -> None:
    """SIGTERM to the worker process alone, as `docker stop` and Kubernetes send it."""
    proc.popen.send_signal(signal.SIGTERM)


def elapsed_since(start: float) -> float:
    """Seconds since a time.monotonic() reading."""
    return time.monotonic() - start
