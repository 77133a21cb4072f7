"""Real processes for integration tests: redis-server, `python -m worker`, the API (gunicorn)."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.audio import REPO_ROOT

VENV_BIN = REPO_ROOT / ".venv" / "bin"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(
    predicate: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.1
) -> Any:
    """Poll until `predicate` returns something truthy; fail with `what` after the deadline."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (httpx.HTTPError, OSError) as error:
            last_error = error
        else:
            if value:
                return value
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what} ({last_error})")


@dataclass
class Proc:
    """A child process in its own process group, with its output in a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout_s: float = 20.0) -> None:
        if not self.alive():
            return
        self.signal_group(signal.SIGTERM)
        try:
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            self.popen.wait(10)


@dataclass
class Service:
    """redis-server + API + workers sharing one temporary uploads folder."""

    root: Path
    env: dict[str, str]
    redis_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    procs: list[Proc] = field(default_factory=list)
    redis: Proc | None = None
    api: Proc | None = None
    workers: list[Proc] = field(default_factory=list)
    admin_key: str | None = None
    """The deployment's ADMIN_API_KEY when it runs with API keys on, else None."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def client(self, timeout_s: float = 60, api_key: str | None = None) -> httpx.Client:
        """An HTTP client of the API that sends `api_key`, else the admin key when keys are on."""
        key = api_key or self.admin_key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, timeout=timeout_s, headers=headers)

    @property
    def upload_dir(self) -> Path:
        return Path(self.env["UPLOAD_DIR"])

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        log_path = self.root / f"{name}.log"
        handle = log_path.open("ab")
        popen = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env={**os.environ, **self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        handle.close()
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def start_process(self, name: str, argv: list[str]) -> Proc:
        """Any other process of the deployment (stopped with it), its log beside the others."""
        return self._spawn(name, argv)

    def start_redis(self) -> Proc:
        data = self.root / "redis"
        data.mkdir(exist_ok=True)
        self.redis = self._spawn(
            "redis",
            [
                "redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                "--dir", str(data), "--appendonly", "yes", "--appendfsync", "everysec",
                "--maxmemory-policy", "noeviction", "--save", "",
            ],
        )  # fmt: skip
        wait_until(lambda: _redis_ping(self.redis_port), 20, "redis-server to answer")
        return self.redis

    def start_worker(self, extra_env: dict[str, str] | None = None) -> Proc:
        index = len(self.workers)
        worker = self._spawn(
            f"worker{index}", [str(VENV_BIN / "python"), "-m", "worker"], extra_env
        )
        self.workers.append(worker)
        return worker

    def start_api(self, web_workers: int = 1) -> Proc:
        self.api = self._spawn(
            "api",
            [
                str(VENV_BIN / "gunicorn"), "-c", "python:api.gunicorn_conf", "api.main:app",
                "-k", "uvicorn_worker.UvicornWorker",
                "--bind", f"127.0.0.1:{self.api_port}", "--workers", str(web_workers),
            ],
        )  # fmt: skip
        wait_until(lambda: httpx.get(f"{self.url}/health").status_code == 200, 60, "the API")
        return self.api

    def wait_for_workers(self, count: int, timeout_s: float = 120) -> None:
        wait_until(
            lambda: httpx.get(f"{self.url}/health").json()["workers"] >= count,
            timeout_s,
            f"{count} live worker(s)",
        )

    def stop(self) -> None:
        # Redis last, even one restarted by a test, so that workers shut down against it.
        newest_first = list(reversed(self.procs))
        for proc in [p for p in newest_first if p.name != "redis"] + [
            p for p in newest_first if p.name == "redis"
        ]:
            proc.stop()


def _redis_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
        conn.sendall(b"PING\r\n")
        return conn.recv(16).startswith(b"+PONG")


def service_env(root: Path, redis_port: int) -> dict[str, str]:
    """The environment every process of a test deployment shares."""
    uploads = root / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    return {
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(redis_port),
        "UPLOAD_DIR": str(uploads),
        "MODEL_CACHE_DIR": str(root / "models"),
        "DEVICE": "cpu",
        "LOG_LEVEL": "INFO",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }


@contextlib.contextmanager
def running_service(
    root: Path,
    workers: int = 1,
    *,
    web_workers: int = 1,
    worker_env: dict[str, str] | None = None,
    keyed: bool = False,
) -> Iterator[Service]:
    """A whole deployment on loopback, torn down (every process group) on exit; with `keyed`,
    API keys are required and `service.admin_key` is its ADMIN_API_KEY."""
    port = free_port()
    env = service_env(root, port)
    admin_key = None
    if keyed:
        admin_key = f"test-admin-{secrets.token_urlsafe(12)}"
        env |= {"REQUIRE_API_KEY": "true", "ADMIN_API_KEY": admin_key}
    service = Service(root=root, env=env, redis_port=port, admin_key=admin_key)
    try:
        service.start_redis()
        for _ in range(workers):
            service.start_worker(worker_env)
        service.start_api(web_workers)
        service.wait_for_workers(workers)
        yield service
    finally:
        service.stop()


def submit(client: httpx.Client, audio: Path, engine: str = "whisperx", **fields: str) -> str:
    """POST /transcribe and return the job id (asserting 200)."""
    with audio.open("rb") as handle:
        response = client.post(
            "/transcribe",
            files={"file": (audio.name, handle)},
            data={"engine": engine, **fields},
        )
    assert response.status_code == 200, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def wait_for_job(
    client: httpx.Client,
    job_id: str,
    timeout_s: float = 180,
    until: tuple[str, ...] = ("finished", "failed"),
) -> dict[str, Any]:
    """Poll /status until the job reaches one of `until`; returns the status body."""

    def poll() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"/status/{job_id}").json()
        return body if body["status"] in until else None

    result: dict[str, Any] = wait_until(poll, timeout_s, f"job {job_id} to reach {until}", 0.2)
    return result
