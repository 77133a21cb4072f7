"""A full uploads filesystem (a real 2 MiB tmpfs): 507, no partial file, no job; then recovery.

Needs root to mount; elsewhere it is skipped with the reason (tests/unit/test_disk_full.py
injects ENOSPC at each step without a mount).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from common.catalog import EngineName, Route
from common.contract import Keys, route_queue_name
from tests.audio import write_tone_wav
from tests.faults.harness import redis_of
from tests.services import Service, free_port, service_env

pytestmark = pytest.mark.integration

DISK_BYTES = 2 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, mounted for the test and unmounted after it."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or 'mount failed'}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
def service(tmp_path: Path, small_disk: Path) -> Iterator[Service]:
    """Redis and the API, with UPLOAD_DIR on the small disk (no worker: nothing is run)."""
    port = free_port()
    env = {**service_env(tmp_path, port), "UPLOAD_DIR": str(small_disk)}
    deployment = Service(root=tmp_path, env=env, redis_port=port)
    try:
        deployment.start_redis()
        deployment.start_api()
        yield deployment
    finally:
        deployment.stop()


def post(client: httpx.Client, audio: Path) -> httpx.Response:
    with audio.open("rb") as handle:
        return client.post(
            "/transcribe", files={"file": (audio.name, handle)}, data={"engine": "whisperx"}
        )


def queued_jobs(service: Service) -> int:
    redis = redis_of(service)
    try:
        route = Route(EngineName.WHISPERX, "tiny.en")  # the posts' engine, the default model
        return int(redis.llen(Keys(route_queue_name("transcribe", route)).queue))
    finally:
        redis.close()


def test_an_upload_that_fills_the_disk_is_507_and_leaves_nothing(
    service: Service, small_disk: Path, tmp_path: Path
) -> None:
    too_big = write_tone_wav(tmp_path / "three-mib.wav", seconds=100.0)
    assert too_big.stat().st_size > DISK_BYTES
    with httpx.Client(base_url=service.url, timeout=30) as client:
        refused = post(client, too_big)
        assert refused.status_code == 507, refused.text
        assert refused.json()["detail"] == "the server has no space left for this upload"
        assert list(small_disk.iterdir()) == []
        assert shutil.disk_usage(small_disk).used == 0
        assert queued_jobs(service) == 0

        # Space is back as soon as the refused upload is gone: a small one goes through.
        accepted = post(client, write_tone_wav(tmp_path / "one-second.wav"))
        assert accepted.status_code == 200, accepted.text
        assert [path.name for path in small_disk.iterdir()] == [f"{accepted.json()['job_id']}.wav"]
        assert queued_jobs(service) == 1
    assert service.api is not None
    assert "Traceback" not in service.api.log()
