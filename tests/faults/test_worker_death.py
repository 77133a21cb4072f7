"""Workers killed with SIGKILL mid-job: the job is found abandoned, retried, and never loops."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.audio import normalize
from tests.faults.harness import (
    FAST_RECOVERY_ENV,
    MULTILINGUAL,
    elapsed_since,
    kill_worker_group,
    status_of,
    wait_for_worker_running,
    worker_running,
)
from tests.services import running_service, submit, wait_for_job, wait_until

pytestmark = pytest.mark.integration

DETECTION_LIMIT_S = 90


def test_a_job_whose_worker_is_killed_is_finished_by_another_within_90_s(
    tmp_path: Path, keyed: bool
) -> None:
    """Default heartbeat and maintenance settings: what a deployment really gets."""
    env = {"CPU_THREADS": "1"}
    with (
        running_service(tmp_path, workers=2, worker_env=env, keyed=keyed) as service,
        service.client(timeout_s=30) as client,
    ):
        job_id = submit(client, MULTILINGUAL)
        doomed = wait_for_worker_running(service, job_id)
        kill_worker_group(doomed)
        killed_at = time.monotonic()

        rescuer = wait_for_worker_running(service, job_id, timeout_s=DETECTION_LIMIT_S)
        detected_s = elapsed_since(killed_at)
        assert rescuer is not doomed
        assert detected_s < DETECTION_LIMIT_S

        status = wait_for_job(client, job_id, timeout_s=120)
        assert status["status"] == "finished", status
        assert "permission is hereby granted" in normalize(status["result"]["text"])
        wait_until(lambda: not any(service.upload_dir.iterdir()), 5, "the upload to be deleted")
        assert f"Job OK ({job_id})" in rescuer.log()
        assert f"Job OK ({job_id})" not in doomed.log()


def test_a_job_that_kills_every_worker_fails_after_its_retries_and_stays_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keyed: bool
) -> None:
    """Each attempt's worker is killed, as a file that crashes the decoder would do."""
    retries = 1
    monkeypatch.setenv("JOB_RETRIES", str(retries))  # the API sets a job's retries
    env = FAST_RECOVERY_ENV
    with (
        running_service(tmp_path, workers=1, worker_env=env, keyed=keyed) as service,
        service.client(timeout_s=30) as client,
    ):
        job_id = submit(client, MULTILINGUAL)
        doomed = wait_for_worker_running(service, job_id, timeout_s=60)
        kills = 0
        while True:
            kill_worker_group(doomed)
            kills += 1
            service.start_worker(env)
            outcome = wait_until(
                lambda: (
                    status_of(client, job_id)["status"] == "failed"
                    or worker_running(service, job_id)
                ),
                60,
                "the abandoned job to be failed or run again",
            )
            if outcome is True:
                break
            assert kills <= retries, "the job was retried more often than JOB_RETRIES"
            doomed = outcome
        assert kills == retries + 1
        status = status_of(client, job_id)
        assert "stopped (crashed, killed or lost)" in status["error"]
        assert not any(service.upload_dir.iterdir()), "the failed job's upload was kept"

        # It never loops: with a live worker and time to spare, it stays failed.
        service.wait_for_workers(1)
        time.sleep(3)
        assert status_of(client, job_id)["status"] == "failed"
        assert worker_running(service, job_id) is None
