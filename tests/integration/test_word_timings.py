"""Word timings from both engines on the real stack, and the subtitles cut from them."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import srt  # ships no type information
import webvtt

from tests.audio import JFK, JFK_PHRASE, normalize
from tests.services import submit, wait_for_job

pytestmark = pytest.mark.integration

_FFMPEG = shutil.which("ffmpeg")


def finished(client: httpx.Client, engine: str, **fields: str) -> tuple[str, dict[str, Any]]:
    job_id = submit(client, JFK, engine, **fields)
    status = wait_for_job(client, job_id)
    assert status["status"] == "finished", status
    result: dict[str, Any] = status["result"]
    return job_id, result


def assert_words_in_order_inside_the_audio(result: dict[str, Any]) -> list[dict[str, Any]]:
    words = [word for segment in result["segments"] for word in segment["words"]]
    assert words
    starts = [word["start"] for word in words]
    assert starts == sorted(starts)
    assert all(0 <= word["start"] <= word["end"] <= result["duration"] for word in words)
    for segment in result["segments"]:
        assert all(segment["start"] <= w["start"] <= segment["end"] for w in segment["words"])
    return words


def test_whisperx_times_words_by_cross_attention_without_an_aligner(client: httpx.Client) -> None:
    _, result = finished(client, "whisperx")

    assert result["word_timing_source"] == "cross-attention"
    assert any("cross-attention" in note and "wav2vec2" in note for note in result["notes"])
    words = assert_words_in_order_inside_the_audio(result)
    assert JFK_PHRASE in normalize(" ".join(word["word"] for word in words))
    # Timed, not spread evenly: "Americans" comes in the first 3 s, "country." in the last 2 s.
    americans = next(word for word in words if word["word"].startswith("Americans"))
    assert americans["end"] < 3.0
    assert words[-1]["word"].startswith("country")
    assert words[-1]["start"] > 9.0


def test_no_word_timestamps_means_no_words(client: httpx.Client) -> None:
    _, result = finished(client, "whisperx", word_timestamps="false")

    assert result["word_timing_source"] is None
    assert all(not segment["words"] for segment in result["segments"])


def test_timestamped_says_where_its_words_come_from(client: httpx.Client) -> None:
    _, result = finished(client, "timestamped")

    assert result["word_timing_source"] == "whisper-timestamped"
    assert_words_in_order_inside_the_audio(result)


def test_whisperx_srt_of_jfk_is_readable(client: httpx.Client, tmp_path: Path) -> None:
    job_id, result = finished(client, "whisperx")

    response = client.get(f"/result/{job_id}", params={"format": "srt"})

    assert response.status_code == 200
    cues = list(srt.parse(response.text))
    assert len(cues) >= 2  # one 10.7 s cue of 105 characters before word timings
    for cue in cues:
        lines = cue.content.split("\n")
        assert len(lines) <= 2
        assert all(len(line) <= 42 for line in lines)
        assert timedelta(0) <= cue.end - cue.start <= timedelta(seconds=7)
    assert all(a.end <= b.start for a, b in itertools.pairwise(cues))
    assert normalize(" ".join(cue.content for cue in cues)) == normalize(result["text"])
    narrow = client.get(
        f"/result/{job_id}", params={"format": "vtt", "max_line_width": 20, "max_line_count": 1}
    )
    captions = webvtt.from_string(narrow.text, strict=True).captions
    assert all(len(caption.text) <= 20 for caption in captions)
    assert len(captions) > len(cues)
    assert client.get(f"/result/{job_id}", params={"format": "rttm"}).status_code == 409
    assert client.get(f"/result/{job_id}", params={"max_line_count": 0}).status_code == 422

    assert _FFMPEG is not None, "ffmpeg is a system dependency of the service"
    for fmt, text in (("srt", response.text), ("vtt", narrow.text)):
        path = tmp_path / f"jfk.{fmt}"
        path.write_text(text, encoding="utf-8")
        read = subprocess.run(
            [_FFMPEG, "-nostdin", "-v", "error", "-i", str(path), "-f", "srt", "-"],
            capture_output=True,
            check=False,
            timeout=60,
        )
        assert (read.returncode, read.stderr.decode()) == (0, "")
        assert len(list(srt.parse(read.stdout.decode()))) == (
            len(cues) if fmt == "srt" else len(captions)
        )


def test_a_diarized_job_labels_its_cues_and_has_rttm(client: httpx.Client, tmp_path: Path) -> None:
    """Two speakers taking turns, diarized by the bundled backend: the srt's cues carry their
    labels and change with the speaker, vtt has voices, tsv a speaker column, and rttm their
    turns as pyannote reads them."""
    from pyannote.database.util import load_rttm

    from tests.speaker_audio import stereo_in_turns

    audio = stereo_in_turns(repeats=2).write_wav(tmp_path / "turns.wav")
    job_id = submit(client, audio, "whisperx", diarize="true")
    status = wait_for_job(client, job_id, timeout_s=300)
    assert status["status"] == "finished", status["error"]
    speakers = set(status["result"]["speakers"])
    assert len(speakers) == 2

    def fetch(fmt: str) -> str:
        response = client.get(f"/result/{job_id}", params={"format": fmt})
        assert response.status_code == 200, response.text
        return response.text

    cues = list(srt.parse(fetch("srt")))
    labels = [cue.content.split("] ", 1)[0].removeprefix("[") for cue in cues]
    assert set(labels) == speakers
    assert all(len(line) <= 42 for cue in cues for line in cue.content.split("\n"))
    voices = {caption.voice for caption in webvtt.from_string(fetch("vtt"), strict=True).captions}
    assert voices == speakers
    header, *rows = fetch("tsv").splitlines()
    assert header == "start\tend\tspeaker\ttext"
    assert {row.split("\t")[2] for row in rows} <= speakers | {""}
    path = tmp_path / "turns.rttm"
    path.write_text(fetch("rttm"))
    annotation = load_rttm(path)[job_id]
    assert set(annotation.labels()) <= speakers
    assert annotation.get_timeline().duration() > 5.0
