"""Bounded work: decoding stops at MAX_AUDIO_DURATION_S whatever headers say; finite timeouts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from api.jobs.queue import job_timeout_s
from config import Settings
from tests import hostile
from tests.audio import JFK, REPO_ROOT
from worker.audio import AudioDecodeError, decode_audio

FIVE_HOURS_S = 5 * 3600


@pytest.fixture(scope="module")
def lying_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five hours of silence in about 3 MB of FLAC whose header claims ten seconds."""
    folder = tmp_path_factory.mktemp("bomb")
    bomb = hostile.silent_flac(folder / "bomb.flac", seconds=FIVE_HOURS_S)
    return hostile.falsify_flac_duration(bomb, folder / "liar.flac", claimed_seconds=10)


def test_the_lie_is_believed_by_ffprobe(lying_bomb: Path) -> None:
    report = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", lying_bomb],
        capture_output=True,
        check=True,
    )
    assert float(json.loads(report.stdout)["format"]["duration"]) == pytest.approx(10.0)
    assert lying_bomb.stat().st_size < 5 * 1024 * 1024


MEASURE = """
import json, resource, sys, time
from pathlib import Path
from worker.audio import AudioDecodeError, decode_audio
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.monotonic()
try:
    decode_audio(Path(sys.argv[1]), max_duration_s=float(sys.argv[2]), timeout_s=120)
    outcome = "decoded"
except AudioDecodeError as error:
    outcome = str(error)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": outcome, "grew_kib": after - before,
                  "seconds": time.monotonic() - started}))
"""


def test_a_lying_decode_bomb_is_cut_off_at_the_cap_with_bounded_memory(lying_bomb: Path) -> None:
    """Decoded whole, the file would take 576 MB as 16-bit samples and 1.15 GB as float32."""
    cap_s = 600.0
    measured = subprocess.run(
        [sys.executable, "-c", MEASURE, str(lying_bomb), str(cap_s)],
        capture_output=True,
        check=True,
        cwd=REPO_ROOT,
        text=True,
    )
    report = json.loads(measured.stdout.strip().splitlines()[-1])
    assert report["outcome"] == "the audio is longer than the 600 s limit (MAX_AUDIO_DURATION_S)"
    cap_bytes = cap_s * 16_000 * 2
    assert report["grew_kib"] * 1024 < 2 * cap_bytes + 32 * 1024 * 1024, report
    assert report["seconds"] < 30, report


def test_audio_within_the_cap_decodes_whole() -> None:
    audio = decode_audio(JFK, max_duration_s=60, timeout_s=60)
    assert audio.dtype.name == "float32"
    assert len(audio) == 176_000
    assert 0.1 < float(abs(audio).max()) <= 1.0


def test_audio_just_over_the_cap_is_refused() -> None:
    with pytest.raises(AudioDecodeError, match="longer than the 10 s limit"):
        decode_audio(JFK, max_duration_s=10, timeout_s=60)


def test_decoding_that_overruns_its_time_is_stopped(lying_bomb: Path) -> None:
    with pytest.raises(AudioDecodeError, match="decoding took longer than"):
        decode_audio(lying_bomb, max_duration_s=FIVE_HOURS_S, timeout_s=0.05)


@pytest.mark.parametrize(
    ("engine", "duration_s", "expected_s"),
    [
        ("whisperx", 0.0, 300),
        ("whisperx", 60.0, 360),
        ("timestamped", 60.0, 480),
        ("whisperx", None, 300 + 4 * 3600),
        ("timestamped", None, 6 * 3600),
        ("whisperx", 1e9, 6 * 3600),
        ("an engine with no factor", 60.0, 360),
    ],
)
def test_job_timeout_scales_with_audio_and_engine_between_floor_and_ceiling(
    engine: str, duration_s: float | None, expected_s: int
) -> None:
    assert job_timeout_s(Settings(), duration_s, engine) == expected_s


def test_job_timeout_is_never_unlimited() -> None:
    settings = Settings(job_timeout_per_audio_s=1e6, max_audio_duration_s=1e9)
    assert 0 < job_timeout_s(settings, None, "timestamped") <= settings.job_timeout_max_s
