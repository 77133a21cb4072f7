"""`make run`'s script: it starts the embedded deployment, and a requested stop is a clean exit."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.audio import REPO_ROOT
from tests.services import free_port, wait_until

pytestmark = [pytest.mark.deploy, pytest.mark.integration]


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Ports and folders of an instance beside any other, as the README tells a second one."""
    redis_port = free_port()
    env = {
        "PORT": str(free_port()),
        "REDIS_PORT": str(redis_port),
        "UPLOAD_DIR": str(tmp_path / "uploads"),
        "MODEL_CACHE_DIR": str(tmp_path / "models"),
        "WEB_CONCURRENCY": "1",
        "DEVICE": "cpu",
        "HF_HUB_OFFLINE": "1",
    }
    yield env
    shutil.rmtree(REPO_ROOT / "var" / f"redis-{redis_port}", ignore_errors=True)


def _restore_default_signals() -> None:
    # A test run started in the background inherits SIGINT ignored, which bash cannot trap.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("stop_with", [signal.SIGINT, signal.SIGTERM])
def test_a_requested_stop_ends_everything_and_exits_0(
    instance: dict[str, str], tmp_path: Path, stop_with: signal.Signals
) -> None:
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        script = subprocess.Popen(
            ["bash", "scripts/run.sh"],
            cwd=REPO_ROOT,
            env={**os.environ, **instance},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_restore_default_signals,
        )
    url = f"http://127.0.0.1:{instance['PORT']}"
    try:
        wait_until(lambda: httpx.get(f"{url}/health").json()["workers"] == 1, 120, "the service")
        script.send_signal(stop_with)
        assert script.wait(90) == 0, log_path.read_text(errors="replace")
    finally:
        if script.poll() is None:
            script.kill()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/livez")
    assert _processes_with(f"UPLOAD_DIR={instance['UPLOAD_DIR']}") == []
    assert "stopping redis-server" in log_path.read_text(errors="replace")


def _processes_with(variable: str) -> list[int]:
    """Live processes whose environment holds `variable` (NAME=value): the instance's own."""
    found: list[int] = []
    marker = variable.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environment = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in environment and state != "Z":
            found.append(int(entry.name))
    return found
