"""GET /result/{job_id}: the subtitle layout parameters, and rttm only for diarized jobs."""

from __future__ import annotations

from pathlib import Path

import pytest
import srt  # ships no type information
from fastapi.testclient import TestClient
from rq import Queue
from rq.job import Job
from rq.job import JobStatus as RQStatus
from rq.results import Result

from common.transcript import Segment, Transcript, Word
from config import Settings
from tests.fakes import enqueue_path

SENTENCE = "one two three four five six seven eight nine ten eleven twelve"


def finished(queue: Queue, settings: Settings, tmp_path: Path, transcript: Transcript) -> Job:
    """A job that finished with `transcript` as its result, as a worker stores it."""
    job = enqueue_path(queue, settings, tmp_path / "a.wav")
    Result.create(
        job, Result.Type.SUCCESSFUL, ttl=60, return_value=transcript.model_dump(mode="json")
    )
    job.set_status(RQStatus.FINISHED)
    return job


def transcript(speaker: str | None = None) -> Transcript:
    """Twelve words, one a second, in one segment; with `speaker`, a diarized transcript."""
    words = [
        Word(word=text, start=float(index), end=index + 1.0, speaker=speaker)
        for index, text in enumerate(SENTENCE.split())
    ]
    segment = Segment(id=0, start=0.0, end=12.0, text=SENTENCE, words=words, speaker=speaker)
    return Transcript(
        engine="whisperx",
        model="tiny.en",
        language="en",
        duration=12.0,
        text=SENTENCE,
        segments=[segment],
        word_timing_source="cross-attention",
        speakers=[speaker] if speaker else [],
    )


def test_srt_is_cut_by_the_default_layout(
    client: TestClient, queue: Queue, settings: Settings, tmp_path: Path
) -> None:
    job = finished(queue, settings, tmp_path, transcript())

    response = client.get(f"/result/{job.id}", params={"format": "srt"})

    assert response.status_code == 200
    cues = list(srt.parse(response.text))
    # At most 7 s a cue: seven words, then five.
    assert [cue.content for cue in cues] == [
        "one two three four five six seven",
        "eight nine ten eleven twelve",
    ]


def test_layout_parameters_change_the_cues(
    client: TestClient, queue: Queue, settings: Settings, tmp_path: Path
) -> None:
    job = finished(queue, settings, tmp_path, transcript())
    params = {
        "format": "vtt",
        "max_line_width": "10",
        "max_line_count": "1",
        "max_cue_duration_s": "3",
    }

    response = client.get(f"/result/{job.id}", params=params)

    assert response.status_code == 200
    texts = [line for line in response.text.splitlines()[2:] if line and "-->" not in line]
    # Ten characters a line, one line, three seconds: "seven eight" is eleven characters.
    assert texts == [
        "one two",
        "three four",
        "five six",
        "seven",
        "eight nine",
        "ten eleven",
        "twelve",
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_line_width", "9"),
        ("max_line_width", "201"),
        ("max_line_width", "wide"),
        ("max_line_count", "0"),
        ("max_line_count", "6"),
        ("max_cue_duration_s", "0.5"),
        ("max_cue_duration_s", "61"),
        ("max_cue_duration_s", "nan"),
    ],
)
def test_bad_layout_values_are_a_422(
    client: TestClient, queue: Queue, settings: Settings, tmp_path: Path, name: str, value: str
) -> None:
    job = finished(queue, settings, tmp_path, transcript())

    response = client.get(f"/result/{job.id}", params={"format": "srt", name: value})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", name]


def test_rttm_of_a_job_that_was_not_diarized_is_a_409(
    client: TestClient, queue: Queue, settings: Settings, tmp_path: Path
) -> None:
    job = finished(queue, settings, tmp_path, transcript())

    response = client.get(f"/result/{job.id}", params={"format": "rttm"})

    assert response.status_code == 409
    assert response.json()["detail"] == (
        f"job {job.id} was not diarized, so it has no speaker turns for rttm; submit it again "
        "with diarize=true"
    )


def test_rttm_of_a_diarized_job(
    client: TestClient, queue: Queue, settings: Settings, tmp_path: Path
) -> None:
    job = finished(queue, settings, tmp_path, transcript(speaker="SPEAKER_00"))

    response = client.get(f"/result/{job.id}", params={"format": "rttm"})

    assert response.status_code == 200
    assert response.headers["content-disposition"] == f'attachment; filename="{job.id}.rttm"'
    assert response.text == f"SPEAKER {job.id} 1 0.000 12.000 <NA> <NA> SPEAKER_00 <NA> <NA>\n"
    srt_text = client.get(f"/result/{job.id}", params={"format": "srt"}).text
    assert [cue.content for cue in srt.parse(srt_text)] == [
        "[SPEAKER_00] one two three four five six\nseven",  # the label counts in the width
        "[SPEAKER_00] eight nine ten eleven twelve",
    ]
