"""What every part shares: options, a deployment on loopback, jobs end to end, /proc readings."""

from __future__ import annotations

import logging
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from common.contract import TERMINAL
from tests.audio import JFK, SHARED_DATA
from tests.services import Proc, Service, free_port, service_env, wait_until
from worker.models import BUNDLED_MODEL

log = logging.getLogger(__name__)

MULTILINGUAL = SHARED_DATA / "multilingual.mp3"
SHORT_AUDIO = JFK
LONG_WAIT_S = 60
JOB_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Options:
    """How this run is set up (from the command line)."""

    device: str
    model: str
    engines: tuple[str, ...]
    quick: bool
    workdir: Path
    model_cache_dir: Path
    cores: int

    @property
    def runs(self) -> int:
        """Measured repetitions of each end-to-end and direct timing."""
        return 2 if self.quick else 5

    @property
    def scaling_jobs(self) -> int:
        """Jobs per scaling phase."""
        return 8 if self.quick else 20

    @property
    def load_seconds(self) -> float:
        """Length of each HTTP load phase."""
        return 3.0 if self.quick else 8.0

    def env(self) -> dict[str, str]:
        """Environment shared by the bench process's engines and the service's processes."""
        env = {"DEVICE": self.device, "MODEL_CACHE_DIR": str(self.model_cache_dir)}
        if self.model == BUNDLED_MODEL:
            # The bundled model needs no network; fail fast instead of trying the hub for the
            # (absent) alignment model, as the integration tests do.
            env["HF_HUB_OFFLINE"] = "1"
        return env


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], fraction: float) -> float:
    """The `fraction` quantile (0-1) by nearest rank."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


# --- The deployment ---------------------------------------------------------------------------


@contextmanager
def deployment(options: Options) -> Iterator[Service]:
    """redis-server on loopback; the API and workers are started by the parts that need them."""
    root = options.workdir / "service"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = service_env(root, port)
    env.pop("HF_HUB_OFFLINE", None)
    env.update(options.env())
    service = Service(root=root, env=env, redis_port=port)
    try:
        service.start_redis()
        yield service
    finally:
        service.stop()


def restart_api(service: Service, web_workers: int, **env: str) -> None:
    """(Re)start the API under gunicorn with `web_workers` processes and extra settings."""
    if service.api is not None:
        service.api.stop()
    service.env.update(env)
    service.api_port = free_port()
    service.start_api(web_workers)


def _listening(worker: Proc) -> bool:
    if not worker.alive():
        raise RuntimeError(f"{worker.name} exited:\n{worker.log()[-3000:]}")
    return "Listening on" in worker.log()


def start_workers(service: Service, count: int, cpu_threads: int) -> None:
    """Start `count` workers with CPU_THREADS=cpu_threads and wait until each listens."""
    started = [service.start_worker({"CPU_THREADS": str(cpu_threads)}) for _ in range(count)]
    for worker in started:
        wait_until(partial(_listening, worker), 120, f"{worker.name} to listen")


def stop_workers(service: Service) -> None:
    """Stop every worker (they are idle) and set their logs aside, so new ones start afresh."""
    for worker in service.workers:
        worker.stop()
        retired = worker.log_path.with_name(f"{worker.name}-{time.time_ns()}.log")
        worker.log_path = worker.log_path.rename(retired)
    service.workers.clear()


def worker_loads(service: Service, engine: str) -> list[int]:
    """For each worker, how many times it has loaded a model of `engine` (from its log)."""
    marker = f"loaded ModelSpec(engine='{engine}'"
    return [worker.log().count(marker) for worker in service.workers]


# --- Jobs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRun:
    """One job end to end, as a client sees it."""

    job_id: str
    status: dict[str, Any]
    submit_s: float
    """POST /transcribe, upload and probe included."""
    total_s: float
    """From the start of the POST to the final status (with the transcript) read back."""
    wake_lag_s: float
    """From the worker's `ended_at` to the client holding the answer."""

    @property
    def result(self) -> dict[str, Any]:
        result: dict[str, Any] = self.status.get("result") or {}
        return result


def submit(client: httpx.Client, audio: Path, engine: str, model: str) -> str:
    with audio.open("rb") as handle:
        response = client.post(
            "/transcribe",
            files={"file": (audio.name, handle)},
            data={"engine": engine, "model": model},
        )
    response.raise_for_status()
    job_id: str = response.json()["job_id"]
    return job_id


def await_end(
    client: httpx.Client, job_id: str, timeout_s: float = JOB_TIMEOUT_S
) -> dict[str, Any]:
    """Long-poll `/status/{id}?wait=…` until the job ends; the final status body."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.get(f"/status/{job_id}", params={"wait": LONG_WAIT_S})
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        if body["status"] in TERMINAL:
            return body
    raise TimeoutError(f"job {job_id} did not end within {timeout_s:.0f} s")


def run_job(client: httpx.Client, audio: Path, engine: str, model: str) -> JobRun:
    """Submit, long-poll to the end, and time it; fails loudly unless the job finished."""
    started = time.perf_counter()
    job_id = submit(client, audio, engine, model)
    submitted = time.perf_counter()
    status = await_end(client, job_id)
    ended = time.perf_counter()
    answered_at = time.time()
    if status["status"] != "finished":
        raise RuntimeError(f"job {job_id} on {engine} ended {status['status']}: {status['error']}")
    ended_at = datetime.fromisoformat(status["ended_at"]).timestamp()
    return JobRun(
        job_id=job_id,
        status=status,
        submit_s=submitted - started,
        total_s=ended - started,
        wake_lag_s=answered_at - ended_at,
    )


def run_openai_request(client: httpx.Client, audio: Path, engine: str, model: str) -> float:
    """POST /v1/audio/transcriptions and wait for its answer (the request holds until the job
    ends); the seconds it took. A new Idempotency-Key each time, so no run is answered from an
    earlier one's job; word timings asked for, as the direct call and /transcribe make them."""
    started = time.perf_counter()
    with audio.open("rb") as handle:
        response = client.post(
            "/v1/audio/transcriptions",
            files={"file": (audio.name, handle)},
            data={"model": f"{engine}/{model}", "word_timestamps": "true"},
            headers={"Idempotency-Key": str(uuid.uuid4())},
            timeout=JOB_TIMEOUT_S,
        )
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"the OpenAI route answered {response.status_code}: {response.text}")
    return elapsed


def http_client(service: Service) -> httpx.Client:
    return httpx.Client(base_url=service.url, timeout=LONG_WAIT_S + 30)


# --- /proc --------------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """The direct children of a process."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()]


def memory_kib(pid: int, field: str) -> int:
    """A memory figure of /proc/<pid>/status in KiB (VmRSS: now, VmHWM: peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux clear_refs 5); False where not permitted."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"
