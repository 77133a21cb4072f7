"""SIGTERM mid-job: the job finishes within the grace period, or is requeued at the front."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.audio import JFK
from tests.faults.harness import (
    MULTILINGUAL,
    status_of,
    terminate,
    wait_for_worker_running,
)
from tests.services import Service, running_service, submit, wait_for_job

pytestmark = pytest.mark.integration

QUIET_ENV = {"WHISPERX_ALIGN": "false", "CPU_THREADS": "2"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, keyed: bool) -> Iterator[Service]:
    """Redis and the API; each test starts the workers it needs."""
    root = tmp_path_factory.mktemp("shutdown")
    with running_service(root, workers=0, keyed=keyed) as running:
        yield running


@pytest.fixture
def client(service: Service) -> Iterator[httpx.Client]:
    """An HTTP client for the deployment."""
    with service.client(timeout_s=30) as http:
        yield http


def test_sigterm_lets_the_running_job_finish_then_the_worker_exits(
    service: Service, client: httpx.Client
) -> None:
    worker = service.start_worker(QUIET_ENV)  # SHUTDOWN_GRACE_S: the default 30 s
    job_id = submit(client, JFK)  # the model's load and 11 s of audio: well within the grace
    assert wait_for_worker_running(service, job_id) is worker
    terminate(worker)
    assert worker.popen.wait(40) == 0
    status = status_of(client, job_id)
    assert status["status"] == "finished", status
    assert status["result"]["text"].strip()
    assert f"Job OK ({job_id})" in worker.log()


def test_a_job_still_running_after_the_grace_period_is_requeued_first(
    service: Service, client: httpx.Client
) -> None:
    impatient = service.start_worker({**QUIET_ENV, "SHUTDOWN_GRACE_S": "1"})
    interrupted = submit(client, MULTILINGUAL)
    assert wait_for_worker_running(service, interrupted) is impatient
    behind = submit(client, JFK)
    terminate(impatient)
    assert impatient.popen.wait(15) == 0
    requeued = status_of(client, interrupted)
    assert requeued["status"] == "queued", requeued
    assert requeued["progress"] == {"stage": "queued", "percent": None}
    assert any(service.upload_dir.glob(f"{interrupted}.*")), "the requeued job lost its upload"

    service.start_worker(QUIET_ENV)
    first = wait_for_job(client, interrupted, timeout_s=120)
    second = wait_for_job(client, behind, timeout_s=120)
    assert first["status"] == second["status"] == "finished"
    assert first["ended_at"] <= second["started_at"], "the requeued job did not go first"
