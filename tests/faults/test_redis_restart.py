"""kill -9 Redis mid-work and restart it on the same data: nothing accepted is lost.

Redis runs as `make run` and the compose file run it: AOF with fsync every second,
noeviction. A killed Redis process loses no write it acknowledged (the kernel holds what it
wrote); the API answers 503 while it is down, and the API and the workers reconnect by
themselves.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.audio import JFK
from tests.faults.harness import (
    kill_redis,
    restart_redis,
    wait_for_worker_running,
)
from tests.services import running_service, submit, wait_for_job, wait_until

pytestmark = pytest.mark.integration


def test_redis_kill_9_loses_no_accepted_job_and_everything_reconnects(
    tmp_path: Path, short_clip: Path, keyed: bool
) -> None:
    env = {"WHISPERX_ALIGN": "false"}
    with (
        running_service(tmp_path, workers=1, worker_env=env, keyed=keyed) as service,
        service.client(timeout_s=30) as client,
    ):
        worker = service.workers[0]
        running = submit(client, JFK)  # the first job: the model loads, then 11 s of audio
        waiting = [submit(client, short_clip) for _ in range(5)]
        wait_for_worker_running(service, running)
        uploads_before = set(service.upload_dir.iterdir())

        kill_redis(service)

        refused = client.post(
            "/transcribe",
            files={"file": (short_clip.name, short_clip.read_bytes())},
            data={"engine": "whisperx"},
        )
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        assert set(service.upload_dir.iterdir()) == uploads_before, "a refused upload was kept"
        assert client.get("/health").status_code == 503
        assert client.get(f"/status/{running}").status_code == 503

        restart_redis(service)

        for job_id in [running, *waiting]:
            status = wait_for_job(client, job_id, timeout_s=120)
            assert status["status"] == "finished", status
        after = submit(client, short_clip)
        assert wait_for_job(client, after, timeout_s=60)["status"] == "finished"
        wait_until(
            lambda: client.get("/health").json()["workers"] == 1, 30, "/health to see the worker"
        )
        assert worker.alive(), "the worker died with Redis instead of reconnecting"
        wait_until(lambda: not any(service.upload_dir.iterdir()), 10, "the uploads to be removed")
