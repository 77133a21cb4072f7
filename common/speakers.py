"""Speaker turns and how they label a transcript: each segment and word gets the speaker it
overlaps most."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from common.transcript import Transcript


@dataclass(frozen=True)
class Turn:
    """One speaker talking from `start` to `end`, seconds from the start of the audio."""

    start: float
    end: float
    speaker: str


def speaker_label(index: int) -> str:
    """The label of the `index`-th speaker found (0-based): SPEAKER_00, SPEAKER_01, ..."""
    return f"SPEAKER_{index:02d}"


class _TurnIndex:
    """Turns sorted by start, for overlap and nearest-turn look-ups."""

    def __init__(self, turns: Sequence[Turn]) -> None:
        self.turns = sorted((turn for turn in turns if turn.end > turn.start), key=_start_of)
        self.starts = [turn.start for turn in self.turns]
        self.longest = max((turn.end - turn.start for turn in self.turns), default=0.0)

    def speaker_of(self, start: float, end: float) -> str | None:
        """The speaker with the most time overlapping [start, end]; for an interval that
        overlaps no turn (or has no length), the speaker of the nearest turn; None without
        turns. Ties go to the speaker whose overlapping time starts first."""
        if not self.turns:
            return None
        end = max(end, start)
        overlap: dict[str, float] = {}
        # Only turns starting before `end` and after `start - longest` can overlap.
        first = bisect.bisect_left(self.starts, start - self.longest)
        last = bisect.bisect_right(self.starts, end)
        for turn in self.turns[first:last]:
            shared = min(turn.end, end) - max(turn.start, start)
            if shared > 0:
                overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + shared
        if overlap:
            return max(overlap, key=lambda speaker: overlap[speaker])
        return self._nearest((start + end) / 2)

    def _nearest(self, moment: float) -> str:
        def distance(turn: Turn) -> float:
            return max(turn.start - moment, moment - turn.end, 0.0)

        at = bisect.bisect_right(self.starts, moment)
        # The nearest turn starts just after `moment`, or is one of those starting before it
        # (the one ending last among them is the closest of those).
        candidates = self.turns[at : at + 1]
        if at > 0:
            candidates.append(max(self.turns[:at], key=lambda turn: turn.end))
        return min(candidates, key=distance).speaker


def _start_of(turn: Turn) -> float:
    return turn.start


def assign_speakers(transcript: Transcript, turns: Sequence[Turn]) -> None:
    """Label `transcript` in place from `turns`: every segment and every word gets the speaker
    whose turns overlap it longest (the nearest turn's speaker when none overlaps, e.g. a word
    in a pause or of zero length), and `transcript.speakers` lists the labels used, in label
    order (labels are SPEAKER_NN). Without turns (silence) nothing is labelled and
    `speakers` is empty; turns of zero length are ignored."""
    index = _TurnIndex(turns)
    used: set[str] = set()
    for segment in transcript.segments:
        segment.speaker = index.speaker_of(segment.start, segment.end)
        for word in segment.words:
            word.speaker = index.speaker_of(word.start, word.end)
        labels = (segment.speaker, *(word.speaker for word in segment.words))
        used.update(label for label in labels if label is not None)
    transcript.speakers = sorted(used)
