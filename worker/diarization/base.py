"""The diarization port: what every backend takes and returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from common.speakers import Turn
from worker.engines.base import Audio, ModelLoadError


@dataclass(frozen=True)
class SpeakerCount:
    """What a job says about how many speakers there are: an exact number, or bounds on the
    estimate (each None when unsaid)."""

    exact: int | None = None
    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True)
class DiarizerContext:
    """Where and how a backend loads its models."""

    device: str
    model_cache_dir: str
    pyannote_pipeline: str
    hf_token: str | None = None


class Diarizer(Protocol):
    """A loaded diarization model."""

    def diarize(self, audio: Audio, count: SpeakerCount) -> list[Turn]:
        """Who speaks when in 16 kHz mono float32 `audio`: turns sorted by start, labelled
        SPEAKER_00, SPEAKER_01, ... in the order the speakers first speak; an empty list when
        nobody speaks. An exact count in `count` is honoured, bounds limit the estimate."""
        ...


class DiarizerFactory(Protocol):
    """A backend class: building it loads its models (slow, once per worker process)."""

    def __call__(self, context: DiarizerContext) -> Diarizer: ...


class DiarizationUnavailableError(ModelLoadError):
    """The configured diarization backend cannot be loaded on this worker."""
