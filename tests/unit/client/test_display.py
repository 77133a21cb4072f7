"""What a batch prints where there is no terminal: one line per change of state."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

from transcribe_client.batch import Outcome
from transcribe_client.display import LineReporter, describe, summary
from transcribe_client.inputs import Item, Source
from transcribe_client.service import JobState

ITEM = Item(Source("talk.flac", Path("talk.flac")), (("srt", Path("talk.srt")),))


def test_one_line_per_change_not_per_percent() -> None:
    stream = io.StringIO()
    lines = LineReporter(stream)
    lines.preparing(ITEM)
    for sent in (0, 500, 1_200_000):
        lines.uploading(ITEM, sent, 1_200_000)
    job = "6f1c"
    for state in (
        JobState(job, "queued"),
        JobState(job, "queued", queue_position=2),
        JobState(job, "queued", queue_position=2),
        JobState(job, "queued", queue_position=1),
        JobState(job, "started", "loading_model", None),
        JobState(job, "started", "transcribing", 10.0),
        JobState(job, "started", "transcribing", 60.0),
        JobState(job, "finished", "done", 100.0),
    ):
        lines.job(ITEM, state, reused=False)
    lines.ended(ITEM, Outcome.DONE, "talk.srt")
    assert stream.getvalue().splitlines() == [
        "talk.flac: uploading 1.2 MB",
        "talk.flac: job 6f1c submitted, queued",
        "talk.flac: queued, position 2",
        "talk.flac: queued, position 1",
        "talk.flac: running: loading model",
        "talk.flac: running: transcribing",
        "talk.flac: finished",
        "talk.flac: done: talk.srt",
    ]


def test_a_reused_job_says_so() -> None:
    stream = io.StringIO()
    LineReporter(stream).job(ITEM, JobState("6f1c", "finished"), reused=True)
    assert stream.getvalue() == "talk.flac: job 6f1c submitted earlier, finished\n"


def test_words_for_states_and_totals() -> None:
    assert describe(JobState("j", "started", "aligning", 42.4)) == "aligning 42%"
    assert describe(JobState("j", "started", "aligning", 42.4), percent=False) == "aligning"
    assert summary(Counter({Outcome.DONE: 2, Outcome.FAILED: 1})) == "3 inputs: 2 done, 1 failed"
    assert summary(Counter()) == "0 inputs: nothing to do"
