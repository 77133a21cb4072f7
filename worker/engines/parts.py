"""Decoding long audio in parts: where to cut off a short first part, and shifting a part's
segments into the job's timeline; numpy only, so the cut is testable without the engines."""

from __future__ import annotations

from typing import Any

import numpy as np

from worker.engines.base import SAMPLE_RATE, Audio

FIRST_PART_S = 10.0
"""Audio of STREAMED_FROM_S or more is decoded in two calls, cut at the quietest moment near
this many seconds, so that its first segments reach the client after one short window's decode
instead of a whole 30 s window's (the first of a 60 s file's two windows holds half its speech)."""

STREAMED_FROM_S = 30.0
"""Shorter audio is decoded in one call, exactly as whisper-timestamped would."""

CUT_SEARCH_S = 4.0
"""The cut is looked for this far either side of FIRST_PART_S, seconds."""

_FRAME_S = 0.02
_SMOOTHING_FRAMES = 10
"""Energy is compared over 200 ms, so that a quiet instant inside a word does not win."""


def first_part_cut(samples: Audio) -> float | None:
    """Where to end the first of two decoding calls, seconds: the quietest 200 ms within
    CUT_SEARCH_S of FIRST_PART_S; None for audio shorter than STREAMED_FROM_S (one call)."""
    if samples.size < STREAMED_FROM_S * SAMPLE_RATE:
        return None
    frame = int(_FRAME_S * SAMPLE_RATE)
    low = int((FIRST_PART_S - CUT_SEARCH_S) * SAMPLE_RATE)
    high = int((FIRST_PART_S + CUT_SEARCH_S) * SAMPLE_RATE)
    window = np.asarray(samples[low:high], dtype=np.float64)
    frames = window.size // frame
    energy = np.square(window[: frames * frame]).reshape(frames, frame).mean(axis=1)
    smoothed = np.convolve(energy, np.ones(_SMOOTHING_FRAMES) / _SMOOTHING_FRAMES, mode="valid")
    quietest = int(np.argmin(smoothed)) + _SMOOTHING_FRAMES // 2
    return (low + quietest * frame) / SAMPLE_RATE


def shifted(raw_segments: list[dict[str, Any]], offset: float) -> list[dict[str, Any]]:
    """whisper-timestamped's segments of audio that began `offset` seconds into the job's,
    with their times (and seek, in 10 ms frames) in the job's timeline."""
    if not offset:
        return raw_segments
    moved: list[dict[str, Any]] = []
    for raw in raw_segments:
        segment = dict(raw, start=float(raw["start"]) + offset, end=float(raw["end"]) + offset)
        if isinstance(raw.get("seek"), int):
            segment["seek"] = raw["seek"] + round(offset * 100)
        if raw.get("words"):
            segment["words"] = [
                dict(word, start=float(word["start"]) + offset, end=float(word["end"]) + offset)
                for word in raw["words"]
            ]
        moved.append(segment)
    return moved
