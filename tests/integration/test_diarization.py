"""Speakers on the real stack: `diarize=true` through both engines on the bundled tiny.en and
the bundled diarization backend (pyannote cannot load offline, so `auto` falls back), scored
with pyannote.metrics' DER against references that follow from how the audio was built."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from common.speakers import Turn
from tests.services import submit, wait_for_job
from tests.speaker_audio import (
    MEETINGS,
    Recording,
    diarization_error_rate,
    meeting,
    stereo_in_turns,
)
from worker.diarization.base import Diarizer, DiarizerContext, SpeakerCount
from worker.diarization.resemblyzer_backend import ResemblyzerDiarizer

pytestmark = pytest.mark.integration

log = logging.getLogger(__name__)

TWO_SPEAKER_DER = 0.25
MEETING_DER = 0.40
BRIDGE_S = 0.5
"""Consecutive words (or segments) of one speaker less than this apart make one turn."""


@pytest.fixture(scope="module")
def two_speakers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recording, Path]:
    """stereo_diarization.wav's two speakers taking turns twice (about 20 s)."""
    recording = stereo_in_turns(repeats=2)
    return recording, recording.write_wav(tmp_path_factory.mktemp("speakers") / "turns.wav")


@pytest.fixture(scope="module")
def diarizer(tmp_path_factory: pytest.TempPathFactory) -> Diarizer:
    """The bundled backend in this process, as a worker loads it."""
    cache = tmp_path_factory.mktemp("models")
    return ResemblyzerDiarizer(DiarizerContext("cpu", str(cache), "pyannote/none"))


def diarized(client: httpx.Client, audio: Path, engine: str, **fields: str) -> dict[str, Any]:
    """The finished transcript of `audio` with diarize=true and `fields`."""
    job_id = submit(client, audio, engine, model="tiny.en", diarize="true", **fields)
    status = wait_for_job(client, job_id, timeout_s=300)
    assert status["status"] == "finished", status["error"]
    result: dict[str, Any] = status["result"]
    return result


def labelled_turns(result: dict[str, Any]) -> list[Turn]:
    """The speakers the transcript shows, as turns: its words' labels (its segments' where a
    segment has no words), one speaker's neighbouring pieces joined."""
    pieces: list[Turn] = []
    for segment in result["segments"]:
        spans = segment["words"] or [segment]
        pieces += [Turn(span["start"], span["end"], span["speaker"]) for span in spans]
    turns: list[Turn] = []
    for piece in sorted(pieces, key=lambda turn: turn.start):
        if turns and turns[-1].speaker == piece.speaker and piece.start - turns[-1].end < BRIDGE_S:
            turns[-1] = Turn(turns[-1].start, max(turns[-1].end, piece.end), piece.speaker)
        else:
            turns.append(piece)
    return turns


@pytest.mark.parametrize("engine", ["whisperx", "timestamped"])
def test_two_speakers_are_found_and_placed(
    client: httpx.Client, two_speakers: tuple[Recording, Path], engine: str
) -> None:
    recording, audio = two_speakers
    result = diarized(client, audio, engine)
    assert result["diarization_backend"] == "resemblyzer"
    assert any("pyannote cannot load" in note for note in result["notes"])
    assert result["timings"]["diarize_s"] > 0
    # Both engines time words (whisperx by cross-attention offline), so speakers change mid-segment.
    assert all(segment["words"] for segment in result["segments"])
    assert result["speakers"] == ["SPEAKER_00", "SPEAKER_01"]
    der = diarization_error_rate(recording.reference, labelled_turns(result), recording.duration_s)
    assert der <= TWO_SPEAKER_DER, f"DER {der:.3f} on {engine}"


@pytest.mark.parametrize("name", MEETINGS)
def test_the_bundled_backend_on_the_meetings(diarizer: Diarizer, name: str) -> None:
    recording = meeting(name)
    turns = diarizer.diarize(recording.samples, SpeakerCount())
    assert len({turn.speaker for turn in turns}) == recording.speakers
    der = diarization_error_rate(recording.reference, turns, recording.duration_s)
    assert der <= MEETING_DER, f"DER {der:.3f} on {name}"


def test_a_meeting_through_the_service(client: httpx.Client, tmp_path: Path) -> None:
    """Scored where the transcript has words: tiny.en leaves about 30% of this meeting's
    reference speech (overlaps, back-channel) without a word, and a word-less stretch has no
    label to score; the DER of the whole recording is logged beside it."""
    recording = meeting("meeting_dev00")
    audio = recording.write_wav(tmp_path / "meeting.wav")
    result = diarized(client, audio, "timestamped")
    assert result["speakers"] == ["SPEAKER_00", "SPEAKER_01"]
    turns = labelled_turns(result)
    transcribed = merged_spans(turns)
    der = diarization_error_rate(recording.reference, turns, recording.duration_s, transcribed)
    whole = diarization_error_rate(recording.reference, turns, recording.duration_s)
    log.info(
        "meeting_dev00 through the service: DER %.3f where transcribed, %.3f whole", der, whole
    )
    assert der <= MEETING_DER, f"DER {der:.3f} where transcribed ({whole:.3f} whole)"


def merged_spans(turns: list[Turn]) -> list[tuple[float, float]]:
    """The time the turns cover, whoever speaks, as disjoint spans."""
    spans: list[tuple[float, float]] = []
    for turn in sorted(turns, key=lambda turn: turn.start):
        if spans and turn.start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], turn.end))
        else:
            spans.append((turn.start, turn.end))
    return spans


def test_one_speaker_when_told(client: httpx.Client, two_speakers: tuple[Recording, Path]) -> None:
    result = diarized(client, two_speakers[1], "timestamped", num_speakers="1")
    assert result["speakers"] == ["SPEAKER_00"]
    assert {segment["speaker"] for segment in result["segments"]} == {"SPEAKER_00"}


def test_silence_and_one_word_do_not_fail(client: httpx.Client, tmp_path: Path) -> None:
    silence = Recording("silence", np.zeros(32_000, dtype=np.float32), [])
    result = diarized(client, silence.write_wav(tmp_path / "silence.wav"), "whisperx")
    assert result["speakers"] == []
    one_word = stereo_in_turns().samples[: int(1.2 * 16_000)]  # "He", about a second
    clip = Recording("one-word", one_word, []).write_wav(tmp_path / "word.wav")
    result = diarized(client, clip, "timestamped")
    assert len(result["speakers"]) <= 1
