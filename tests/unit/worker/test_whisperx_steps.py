"""How the whisperx adapter splits a job's chunks into steps, without whisperx itself."""

from __future__ import annotations

from typing import Any

import pytest

from worker.engines.whisperx_engine import (
    chunk_groups,
    fixed_windows,
    group_progress,
    split_first_chunk,
)


def chunks(count: int) -> list[dict[str, Any]]:
    return [{"start": 30.0 * index, "end": 30.0 * index + 29.0} for index in range(count)]


@pytest.mark.parametrize(
    ("count", "batch_size", "sizes"),
    [
        (1, 8, [1]),
        (2, 8, [1, 1]),  # a 60 s file still streams: one chunk per step
        (5, 8, [2, 2, 1]),
        (16, 8, [4, 4, 4, 4]),
        (100, 8, [8] * 12 + [4]),  # long jobs decode full batches
        (3, 1, [1, 1, 1]),
    ],
)
def test_chunks_go_in_at_least_four_steps_of_at_most_a_batch(
    count: int, batch_size: int, sizes: list[int]
) -> None:
    groups = chunk_groups(chunks(count), batch_size)
    assert [len(group) for group in groups] == sizes
    assert [chunk for group in groups for chunk in group] == chunks(count)


def test_no_speech_is_one_empty_step() -> None:
    assert chunk_groups([], 8) == [[]]


def test_progress_counts_chunks_over_every_step() -> None:
    reports: list[tuple[str, float | None]] = []
    report = group_progress(lambda stage, percent: reports.append((stage, percent)), 2, 2, 5)
    report(50.0)  # the pipeline's first chunk of two in this call
    report(100.0)
    assert reports == [("transcribing", 60.0), ("transcribing", 80.0)]


def test_vad_off_decodes_consecutive_windows() -> None:
    windows = fixed_windows(65.0)
    assert [(window["start"], window["end"]) for window in windows] == [
        (0.0, 30.0),
        (30.0, 60.0),
        (60.0, 65.0),
    ]
    assert windows[0]["segments"] == [(0.0, 30.0)]


def test_a_long_first_chunk_is_cut_in_two_so_the_first_words_come_early() -> None:
    chunks = [
        {"start": 0.0, "end": 29.0, "segments": [(0.0, 29.0)]},
        {"start": 31.0, "end": 59.0, "segments": [(31.0, 59.0)]},
    ]
    split = split_first_chunk(chunks, cut=9.4)
    assert [(chunk["start"], chunk["end"]) for chunk in split] == [
        (0.0, 9.4),
        (9.4, 29.0),
        (31.0, 59.0),
    ]
    assert split_first_chunk(chunks, cut=29.0) == chunks  # the short merge ended no earlier
    assert split_first_chunk([], cut=3.0) == []
