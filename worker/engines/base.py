"""The engine port: what every adapter takes and returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from common.contract import TranscribeOptions
from common.transcript import Segment, Transcript

SAMPLE_RATE = 16_000
"""Every engine receives mono float32 audio at this rate, seconds = len(audio) / SAMPLE_RATE."""

Audio = npt.NDArray[np.float32]

ProgressCallback = Callable[[str, float | None], None]
"""Reports (stage, percent 0-100 or None) while a job runs; stages are e.g. `transcribing`."""

SegmentCallback = Callable[[Segment], None]
"""Receives each segment as soon as the engine has decoded it, in order, with ids 0, 1, 2, …;
the returned transcript's segments are these unless the engine refines them afterwards (word
alignment may re-split or re-time them)."""


def discard_segment(segment: Segment) -> None:
    """The SegmentCallback of a caller that wants only the finished transcript."""
    del segment


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load and where: the cache key of a loaded engine."""

    engine: str
    model: str
    device: str
    compute_type: str
    source: str | None = None
    """The catalogue's source for the name (MODELS): a local path or a hub id; None when the
    engine resolves the name itself (the bundled tiny.en, Whisper's own names)."""
    english_only: bool = False
    """The catalogue says the model knows English alone (beyond a `.en` name)."""


def is_local_source(source: str) -> bool:
    """Whether a catalogue source names a path on this machine rather than a hub id."""
    return source.startswith(("/", "./", "../", "~"))


def check_local_source(spec: ModelSpec) -> None:
    """Raise ModelLoadError when the catalogue names a path for `spec` that is not on this
    machine (checked before a load unloads anything to make room)."""
    if spec.source is None or not is_local_source(spec.source):
        return
    if not Path(spec.source).expanduser().exists():
        raise ModelLoadError(
            f"{spec.engine} could not load model {spec.model!r}: its catalogue source "
            f"{spec.source} does not exist"
        )


@dataclass(frozen=True)
class LoadContext:
    """Where an engine may find or put model files."""

    model_cache_dir: str
    cpu_threads: int = 0
    batch_size: int = 8
    align: bool = True


class Engine(Protocol):
    """A loaded model that turns audio into the project's transcript model."""

    def transcribe(
        self,
        audio: Audio,
        options: TranscribeOptions,
        progress: ProgressCallback,
        on_segment: SegmentCallback = discard_segment,
    ) -> Transcript:
        """Transcribe 16 kHz mono audio in `options.language` (detected when None), handing
        each segment to `on_segment` as it is decoded; the caller fills timings other than the
        engine's own."""
        ...


class EngineFactory(Protocol):
    """An engine class: building it loads the model (slow, once per worker and model)."""

    def __call__(self, spec: ModelSpec, context: LoadContext) -> Engine: ...


class ModelLoadError(RuntimeError):
    """The requested model cannot be loaded (not bundled, not cached, not downloadable)."""
