"""Speaker assignment: each segment and word gets the speaker it overlaps most."""

from __future__ import annotations

from common.speakers import Turn, assign_speakers
from common.transcript import Segment, Transcript, Word


def transcript(*segments: Segment) -> Transcript:
    return Transcript(
        engine="fake", model="m", language="en", duration=10.0, text="", segments=list(segments)
    )


def segment(start: float, end: float, *words: Word) -> Segment:
    return Segment(id=0, start=start, end=end, text="", words=list(words))


def word(start: float, end: float) -> Word:
    return Word(word="w", start=start, end=end)


A, B = "SPEAKER_00", "SPEAKER_01"


def test_the_speaker_with_most_overlap_wins_for_segments_and_words() -> None:
    result = transcript(segment(0.0, 4.0, word(0.5, 1.0), word(2.6, 3.2), word(2.9, 3.5)))
    assign_speakers(result, [Turn(0.0, 2.8, A), Turn(2.8, 4.0, B)])
    assert result.segments[0].speaker == A
    assert [w.speaker for w in result.segments[0].words] == [A, B, B]
    assert result.speakers == [A, B]


def test_overlaps_of_one_speaker_add_up() -> None:
    result = transcript(segment(0.0, 3.0))
    turns = [Turn(0.0, 0.8, A), Turn(0.8, 1.8, B), Turn(1.8, 2.6, A)]
    assign_speakers(result, turns)
    assert result.segments[0].speaker == A  # 1.6 s against 1.0 s


def test_without_turns_nothing_is_labelled() -> None:
    result = transcript(segment(0.0, 1.0, word(0.0, 1.0)))
    assign_speakers(result, [])
    assert result.segments[0].speaker is None
    assert result.segments[0].words[0].speaker is None
    assert result.speakers == []


def test_a_word_between_turns_takes_the_nearest_turn() -> None:
    result = transcript(segment(0.0, 10.0, word(4.1, 4.4), word(5.8, 6.1)))
    assign_speakers(result, [Turn(0.0, 4.0, A), Turn(6.5, 9.0, B)])
    assert [w.speaker for w in result.segments[0].words] == [A, B]


def test_a_zero_length_word_takes_the_turn_it_falls_in_or_the_nearest() -> None:
    result = transcript(segment(0.0, 10.0, word(5.0, 5.0), word(9.5, 9.5), word(0.0, 0.0)))
    assign_speakers(result, [Turn(1.0, 3.0, B), Turn(4.0, 6.0, A), Turn(7.0, 8.0, B)])
    assert [w.speaker for w in result.segments[0].words] == [A, B, B]


def test_a_long_turn_that_started_early_still_counts() -> None:
    result = transcript(segment(8.0, 9.0))
    assign_speakers(result, [Turn(0.0, 10.0, A), Turn(7.0, 7.5, B), Turn(8.8, 9.0, B)])
    assert result.segments[0].speaker == A


def test_speakers_lists_only_the_labels_used_in_label_order() -> None:
    result = transcript(segment(0.0, 1.0), segment(5.0, 6.0))
    turns = [Turn(0.0, 1.0, B), Turn(2.0, 3.0, "SPEAKER_02"), Turn(5.0, 6.0, A)]
    assign_speakers(result, turns)
    assert [s.speaker for s in result.segments] == [B, A]
    assert result.speakers == [A, B]


def test_zero_length_turns_are_ignored() -> None:
    result = transcript(segment(0.0, 1.0))
    assign_speakers(result, [Turn(0.5, 0.5, B), Turn(3.0, 4.0, A)])
    assert result.segments[0].speaker == A
