"""Speaker labels as every backend hands them out: SPEAKER_00, ... in order of first speech."""

from __future__ import annotations

from collections.abc import Iterable

from common.speakers import Turn, speaker_label


def relabel_in_order(turns: Iterable[Turn]) -> list[Turn]:
    """`turns` sorted by start, each backend-specific speaker name replaced by SPEAKER_NN, the
    numbers given in the order the speakers first speak."""
    ordered = sorted(turns, key=lambda turn: (turn.start, turn.end))
    labels: dict[str, str] = {}
    for turn in ordered:
        labels.setdefault(turn.speaker, speaker_label(len(labels)))
    return [Turn(turn.start, turn.end, labels[turn.speaker]) for turn in ordered]
