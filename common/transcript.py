"""The one transcript model every engine produces and every output format renders."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

WordTimingSource = Literal["wav2vec2", "cross-attention", "whisper-timestamped"]
"""Where a transcript's word timings came from."""


class Word(BaseModel):
    """One word with its timing, seconds from the start of the audio."""

    word: str
    start: float = Field(ge=0)
    end: float = Field(ge=0)
    probability: float | None = Field(default=None, ge=0, le=1)
    speaker: str | None = Field(default=None, description="SPEAKER_00, ... when diarized.")


class Segment(BaseModel):
    """A stretch of speech: its text, timing and (when the engine gives them) its words, and
    what the decoder reported about it (None where the engine does not say)."""

    id: int = Field(ge=0)
    start: float = Field(ge=0)
    end: float = Field(ge=0)
    text: str
    words: list[Word] = Field(default_factory=list)
    speaker: str | None = Field(default=None, description="SPEAKER_00, ... when diarized.")
    seek: int | None = Field(
        default=None, ge=0, description="Start of the window it was decoded in, 10 ms frames."
    )
    tokens: list[int] = Field(default_factory=list, description="Its Whisper token ids.")
    temperature: float | None = Field(default=None, description="Temperature it was decoded at.")
    avg_logprob: float | None = Field(
        default=None, description="Mean log probability of its tokens."
    )
    compression_ratio: float | None = Field(
        default=None, description="Its text's zlib compression ratio (high means repetition)."
    )
    no_speech_prob: float | None = Field(
        default=None, ge=0, le=1, description="Probability that its window held no speech."
    )


class Timings(BaseModel):
    """Where a job's time went, seconds."""

    queue_wait_s: float | None = None
    model_load_s: float = 0.0
    decode_s: float = 0.0
    transcribe_s: float = 0.0
    align_s: float = 0.0
    diarize_s: float = 0.0
    total_s: float = 0.0


class Transcript(BaseModel):
    """A finished transcription."""

    engine: str
    model: str
    language: str
    language_probability: float | None = Field(default=None, ge=0, le=1)
    duration: float = Field(ge=0, description="Length of the decoded audio, seconds.")
    text: str
    segments: list[Segment]
    word_timing_source: WordTimingSource | None = Field(
        default=None, description="What timed the words; None when there are no word timings."
    )
    speakers: list[str] = Field(
        default_factory=list, description="The speakers found when diarized, in label order."
    )
    diarization_backend: str | None = Field(
        default=None, description="Which diarization backend labelled the speakers."
    )
    timings: Timings = Field(default_factory=Timings)
    notes: list[str] = Field(
        default_factory=list,
        description="Why something is missing, e.g. no word timings when no aligner was loaded.",
    )
