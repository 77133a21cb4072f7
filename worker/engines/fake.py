"""A fake engine for tests of queue and API logic: deterministic, instant, no model files.

Never a stand-in for a real engine where a test claims to transcribe.
"""

from __future__ import annotations

import time

from common.contract import TranscribeOptions
from common.transcript import Segment, Timings, Transcript, Word
from worker.engines import base

FAILING_MODEL = "broken"
"""Asking the fake engine for this model fails the load, as a missing model would."""

SLOW_MODEL_PREFIX = "slow-"
"""A model named `slow-<seconds>` makes each job take that long (for cancel and stop tests)."""


def slow_model(seconds: float) -> str:
    """The fake model name whose jobs take `seconds`."""
    return f"{SLOW_MODEL_PREFIX}{seconds}"


class FakeEngine:
    """Says how long the audio was, one word per second; see FAILING_MODEL and slow_model."""

    loads = 0

    def __init__(self, spec: base.ModelSpec, context: base.LoadContext) -> None:
        """Count the load; fail for FAILING_MODEL."""
        del context
        if spec.model == FAILING_MODEL:
            raise base.ModelLoadError(f"fake engine cannot load model {spec.model!r}")
        FakeEngine.loads += 1
        self._spec = spec

    def transcribe(
        self,
        audio: base.Audio,
        options: TranscribeOptions,
        progress: base.ProgressCallback,
        on_segment: base.SegmentCallback = base.discard_segment,
    ) -> Transcript:
        """One segment, one word per second of audio, handed to `on_segment` once decoded."""
        duration = len(audio) / base.SAMPLE_RATE
        model = self._spec.model
        sleep_s = (
            float(model[len(SLOW_MODEL_PREFIX) :]) if model.startswith(SLOW_MODEL_PREFIX) else 0.0
        )
        progress("transcribing", 0.0)
        if sleep_s:
            time.sleep(sleep_s)
        words = [
            Word(word=f"w{second}", start=float(second), end=min(second + 1.0, duration))
            for second in range(int(duration))
        ]
        text = " ".join(word.word for word in words)
        segment = Segment(id=0, start=0.0, end=duration, text=text, words=words)
        on_segment(segment)
        progress("transcribing", 100.0)
        return Transcript(
            engine=self._spec.engine,
            model=self._spec.model,
            language=options.language or "en",
            duration=duration,
            text=text,
            segments=[segment],
            timings=Timings(transcribe_s=sleep_s),
        )
