"""Where long audio is cut for a short first decoding call, and a part's times moved back."""

from __future__ import annotations

import numpy as np

from worker.engines.base import SAMPLE_RATE
from worker.engines.parts import CUT_SEARCH_S, FIRST_PART_S, first_part_cut, shifted


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (
        np.random.default_rng(seed)
        .uniform(-0.5, 0.5, int(seconds * SAMPLE_RATE))
        .astype(np.float32)
    )


def test_short_audio_is_decoded_in_one_call() -> None:
    assert first_part_cut(noise(29.9)) is None


def test_the_cut_falls_in_the_pause_nearest_the_first_part_length() -> None:
    audio = noise(60.0)
    pause = slice(int(11.3 * SAMPLE_RATE), int(11.9 * SAMPLE_RATE))
    audio[pause] = 0.0
    cut = first_part_cut(audio)
    assert cut is not None
    assert 11.3 <= cut <= 11.9


def test_without_a_pause_the_cut_stays_within_the_search_span() -> None:
    cut = first_part_cut(noise(45.0, seed=3))
    assert cut is not None
    assert FIRST_PART_S - CUT_SEARCH_S <= cut <= FIRST_PART_S + CUT_SEARCH_S


def test_a_pause_outside_the_search_span_is_not_used() -> None:
    audio = noise(40.0)
    audio[int(20 * SAMPLE_RATE) : int(21 * SAMPLE_RATE)] = 0.0
    cut = first_part_cut(audio)
    assert cut is not None
    assert cut < 20.0


def test_a_later_parts_segments_and_words_move_into_the_jobs_timeline() -> None:
    raw = [
        {
            "id": 0,
            "seek": 0,
            "start": 0.5,
            "end": 2.0,
            "text": " Hello there.",
            "words": [
                {"text": "Hello", "start": 0.5, "end": 1.0},
                {"text": "there.", "start": 1.1, "end": 2.0},
            ],
        }
    ]
    [moved] = shifted(raw, 10.25)
    assert (moved["start"], moved["end"], moved["seek"]) == (10.75, 12.25, 1025)
    assert [(word["start"], word["end"]) for word in moved["words"]] == [
        (10.75, 11.25),
        (11.35, 12.25),
    ]
    assert moved["text"] == " Hello there."
    assert raw[0]["start"] == 0.5  # the library's own list is left as it was
    assert shifted(raw, 0.0) is raw
