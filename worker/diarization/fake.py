"""Fake diarization backends for tests of the job and selection logic (never of diarization)."""

from __future__ import annotations

import numpy as np

from common.speakers import Turn, speaker_label
from worker.diarization.base import DiarizationUnavailableError, DiarizerContext, SpeakerCount
from worker.engines.base import SAMPLE_RATE, Audio


class FakeDiarizer:
    """Splits the audio's non-silent span into `count.exact` (default 2) equal turns of
    speakers SPEAKER_00, SPEAKER_01, ... in turn; silence has no turns."""

    loads = 0
    """How many times the class was built (load-once checks)."""

    def __init__(self, context: DiarizerContext) -> None:
        del context
        FakeDiarizer.loads += 1

    def diarize(self, audio: Audio, count: SpeakerCount) -> list[Turn]:
        """Equal turns over the audio's non-silent span (see the class)."""
        loud = np.flatnonzero(np.abs(audio) > 1e-3)
        if loud.size == 0:
            return []
        start, end = loud[0] / SAMPLE_RATE, (loud[-1] + 1) / SAMPLE_RATE
        speakers = count.exact or min(2, count.maximum or 2)
        step = (end - start) / speakers
        return [
            Turn(
                float(start + index * step), float(start + (index + 1) * step), speaker_label(index)
            )
            for index in range(speakers)
        ]


class UnavailableDiarizer:
    """A backend that can never load here, like pyannote without HF_TOKEN or a cached pipeline."""

    def __init__(self, context: DiarizerContext) -> None:
        del context
        raise DiarizationUnavailableError("pyannote cannot load: fake backend, never available")
