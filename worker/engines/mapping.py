"""Shared clean-up when adapters map a library's output into the transcript model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from common.transcript import Segment, Word


@dataclass(frozen=True)
class RawWord:
    """A word as a library reports it; times may be missing or out of order."""

    text: str
    start: float | None
    end: float | None
    probability: float | None


DECODER_FIELDS = (
    "seek",
    "tokens",
    "temperature",
    "avg_logprob",
    "compression_ratio",
    "no_speech_prob",
)
"""What Whisper's decoder reports on a segment, under Whisper's own names (`Segment`'s too)."""


def decoding_of(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The decoder's figures a library reported on a segment (those it left out stay None)."""
    return {name: raw[name] for name in DECODER_FIELDS if raw.get(name) is not None}


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def build_segment(
    segment_id: int,
    start: float,
    end: float,
    text: str,
    words: Iterable[RawWord],
    duration: float,
    previous_end: float = 0.0,
    decoding: Mapping[str, Any] | None = None,
) -> Segment:
    """A segment whose times lie inside [previous_end, duration] and whose words are monotonic.

    Words without times take the end of the word before them (or the segment's start), so every
    word keeps its place in the text; probabilities are clipped to [0, 1]. `decoding` holds the
    decoder's figures (`decoding_of`).
    """
    seg_start = _clamp(start, previous_end, duration)
    seg_end = _clamp(end, seg_start, duration)
    cleaned: list[Word] = []
    cursor = seg_start
    for raw in words:
        text_of_word = raw.text.strip()
        if not text_of_word:
            continue
        word_start = _clamp(raw.start if raw.start is not None else cursor, cursor, duration)
        word_end = _clamp(raw.end if raw.end is not None else word_start, word_start, duration)
        probability = None if raw.probability is None else _clamp(raw.probability, 0.0, 1.0)
        cleaned.append(
            Word(word=text_of_word, start=word_start, end=word_end, probability=probability)
        )
        cursor = word_start
    if cleaned:
        seg_start = min(seg_start, cleaned[0].start)
        seg_end = max(seg_end, cleaned[-1].end)
    return Segment(
        id=segment_id,
        start=seg_start,
        end=seg_end,
        text=text.strip(),
        words=cleaned,
        **(decoding or {}),
    )


def time_floor(previous: Segment | None) -> float:
    """Where the segment after `previous` may start: after its start and its last word's start,
    so that segment and word starts never go back in time across segments."""
    if previous is None:
        return 0.0
    return max(previous.start, previous.words[-1].start if previous.words else 0.0)


def join_text(segments: Iterable[Segment]) -> str:
    """The full transcript text: segment texts joined by single spaces."""
    return " ".join(segment.text for segment in segments if segment.text).strip()
