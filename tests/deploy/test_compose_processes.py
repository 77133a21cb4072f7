"""docker-compose.yml's services as local processes: its commands and variables work together."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

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
    free_port,
    normalized_words,
    plan_stack,
    submit_audio,
    wait_for,
    wait_for_job,
)

# The CPU variant: this machine has no GPU to reserve.
COMPOSE_FILES = (COMPOSE_FILE, CPU_OVERRIDE)
ADMIN_KEY = "compose-test-admin-key"

# Real redis-server, API and worker processes and a real engine: integration tests too.
pytestmark = [pytest.mark.deploy, pytest.mark.integration]


def _gunicorn_workers(master_pid: int) -> int:
    """How many processes gunicorn's master has forked."""
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
            if int(stat.rsplit(")", 1)[1].split()[1]) == master_pid:
                count += 1
    return count


def test_stack_transcribes_jfk(tmp_path: Path) -> None:
    """Redis, the API and a CPU worker from the compose file take jfk.flac through to a transcript.

    The API and the worker run on the packages their images install. Ports and the password go
    in as compose variables, as a user's .env would set them; the healthchecks are the compose
    file's and the images' own.
    """
    api_port, redis_port, metrics_port = free_port(), free_port(), free_port()
    password = secrets.token_hex(12)
    variables = {
        "API_PORT": str(api_port),
        "REDIS_PORT": str(redis_port),
        "REDIS_PASSWORD": password,
        "WEB_CONCURRENCY": "2",
        "ADMIN_API_KEY": ADMIN_KEY,
        "WORKER_METRICS_PORT": str(metrics_port),
    }
    plans = plan_stack(
        COMPOSE_FILES,
        variables,
        project_dir=REPO,
        root=tmp_path,
        environments_dir=IMAGE_ENVIRONMENTS,
    )
    assert list(plans) == ["redis", "api", "worker"]

    with LocalDeployment(tmp_path / "logs") as stack:
        stack.start(plans["redis"])
        stack.wait_healthy("redis", timeout_s=30)
        store = redis.Redis(port=redis_port, password=password)
        config = store.config_get("*")
        assert config["appendonly"] == "yes"
        assert config["appendfsync"] == "everysec"
        assert config["maxmemory-policy"] == "noeviction"
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=redis_port).ping()
        store.close()

        api = stack.start(plans["api"])
        stack.wait_healthy("api", timeout_s=60)
        assert _gunicorn_workers(api.process.pid) == 2

        stack.start(plans["worker"])
        stack.wait_healthy("worker", timeout_s=180)

        base = f"http://127.0.0.1:{api_port}"
        # Keys are on in the compose file: nothing is served without one.
        assert httpx.get(f"{base}/jobs").status_code == 401
        with httpx.Client(
            base_url=base, timeout=30, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        ) as client:
            job_id = submit_audio(client, SHARED_DATA / "jfk.flac", "whisperx")
            try:
                body = wait_for_job(client, job_id, frozenset({"finished"}), timeout_s=120)
            except TimeoutError as error:
                raise stack.failure("worker", str(error)) from None
        assert body["status"] == "finished", body.get("error")
        assert "ask not what your country can do for you" in normalized_words(
            body["result"]["text"]
        )
        # Both tiers count it, with no key needed for the API's metrics (gathered from its two
        # gunicorn processes by the compose command's config module).
        finished = (
            'transcribe_jobs_ended_total{engine="whisperx",model="tiny.en",status="finished"}'
        )
        worker_metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        assert f"{finished} 1.0" in worker_metrics
        api_metrics = httpx.get(f"{base}/metrics", timeout=10).text
        assert (
            'transcribe_jobs_submitted_total{engine="whisperx",model="tiny.en"} 1.0' in api_metrics
        )
        assert "transcribe_workers_ready 1.0" in api_metrics
        # The AOF went to the redis-data volume, as --dir says.
        assert (tmp_path / "volumes" / "redis-data" / "appendonlydir").is_dir()

        # An idle worker leaves on SIGTERM by itself, well within its stop_grace_period.
        code = stack.stop("worker").process.returncode
        assert code == 0, stack.failure(
            "worker", f"exit code {code} on SIGTERM (-9: still running after stop_grace_period)"
        )

        # The API's healthcheck fails while Redis is down.
        stack.kill("redis")
        health = plans["api"].healthcheck
        assert health is not None

        def unhealthy() -> bool | None:
            result = subprocess.run(
                health, cwd=REPO, env=plans["api"].environment, capture_output=True, check=False
            )
            return True if result.returncode != 0 else None

        wait_for(unhealthy, timeout_s=30, what="the API's healthcheck to fail without Redis")


def test_redis_without_password(tmp_path: Path) -> None:
    """With REDIS_PASSWORD unset, Redis takes unauthenticated clients and its healthcheck passes."""
    redis_port = free_port()
    variables = {"REDIS_PORT": str(redis_port)}
    plans = plan_stack(
        COMPOSE_FILES,
        variables,
        project_dir=REPO,
        root=tmp_path,
        environments_dir=IMAGE_ENVIRONMENTS,
    )
    assert plans["worker"].environment["REDIS_PASSWORD"] == ""

    with LocalDeployment(tmp_path / "logs") as stack:
        stack.start(plans["redis"])
        stack.wait_healthy("redis", timeout_s=30)
        client = redis.Redis(port=redis_port)
        assert client.ping()
        client.close()
