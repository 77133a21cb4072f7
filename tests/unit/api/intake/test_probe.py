"""The upload probe: PyAV in a forked child, and ffprobe where PyAV is missing, agree."""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from api.errors import ServiceError
from api.intake import pyav_helper
from api.intake.probe import AudioInfo, probe_audio
from tests.audio import JFK, SHARED_DATA

MULTILINGUAL = SHARED_DATA / "multilingual.mp3"


@pytest.fixture(params=["pyav", "ffprobe"])
def prober(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with each implementation."""
    if request.param == "ffprobe":
        monkeypatch.setattr(pyav_helper, "available", lambda: False)
    else:
        assert pyav_helper.available(), "PyAV is installed with the worker extra"
    return str(request.param)


def probe(path: Path, timeout_s: float = 30.0) -> AudioInfo:
    return asyncio.run(probe_audio(path, timeout_s))


def write_au(path: Path) -> Path:
    """A valid Sun .au file: real audio in a container the service does not accept."""
    samples = b"\x00\x01" * 8000
    path.write_bytes(struct.pack(">4sIIIII", b".snd", 24, len(samples), 3, 16000, 1) + samples)
    return path


@pytest.mark.usefixtures("prober")
@pytest.mark.parametrize(
    ("audio", "format_name", "duration_s"),
    [(JFK, "flac", 11.0), (MULTILINGUAL, "mp3", 60.0)],
)
def test_real_audio_is_read(audio: Path, format_name: str, duration_s: float) -> None:
    info = probe(audio)
    assert info.format_name == format_name
    assert info.duration_s == pytest.approx(duration_s, abs=0.2)


@pytest.mark.usefixtures("prober")
def test_wav_is_read(tone_wav: Path) -> None:
    info = probe(tone_wav)
    assert info.format_name == "wav"
    assert info.duration_s == pytest.approx(1.0, abs=0.01)


@pytest.mark.usefixtures("prober")
def test_audio_in_a_container_outside_the_allow_list_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match=r"not audio in a supported format|is not accepted"):
        probe(write_au(tmp_path / "speech.mp3"))


@pytest.mark.usefixtures("prober")
def test_a_concat_script_opens_nothing(tmp_path: Path) -> None:
    script = tmp_path / "list.mp3"
    script.write_text(f"ffconcat version 1.0\nfile {JFK}\n")
    with pytest.raises(ServiceError) as refused:
        probe(script)
    assert str(tmp_path) not in refused.value.detail


def helper_children(prober: pyav_helper.Prober) -> list[int]:
    helper = prober._process
    assert helper is not None
    return [
        int(pid)
        for pid in Path(f"/proc/{helper.pid}/task/{helper.pid}/children").read_text().split()
    ]


def test_a_probe_that_hangs_is_ended_at_its_deadline(tmp_path: Path) -> None:
    stuck = tmp_path / "stuck.wav"
    os.mkfifo(stuck)  # opening it blocks until a writer comes: a reader that never returns
    started = time.monotonic()
    with pytest.raises(ServiceError, match="in time"):
        probe(stuck, timeout_s=1.0)
    assert time.monotonic() - started < 10


def test_a_probe_that_crashes_is_refused_and_the_helper_goes_on(tmp_path: Path) -> None:
    stuck = tmp_path / "stuck.wav"
    os.mkfifo(stuck)
    prober = pyav_helper.prober()
    pending = prober.submit(stuck, timeout_s=30.0)
    children = wait_for(lambda: helper_children(prober), "the child to start")
    os.kill(children[0], signal.SIGSEGV)
    with pytest.raises(pyav_helper.ContainerUnreadable, match="crashed"):
        pending.result(timeout=10)
    assert probe(JFK).format_name == "flac"


def test_a_helper_that_died_is_replaced() -> None:
    prober = pyav_helper.prober()
    prober.warm_up()
    helper = prober._process
    assert helper is not None
    helper.kill()
    helper.wait()
    assert probe(JFK).duration_s == pytest.approx(11.0, abs=0.1)
    assert prober._process is not helper


def wait_for(predicate: Callable[[], list[int]], what: str) -> list[int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if found := predicate():
            return found
        time.sleep(0.02)
    raise TimeoutError(what)
