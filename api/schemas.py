"""Request and response models of the HTTP API."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from common.catalog import EngineName, Language
from common.job_status import JobStatus as JobStatus
from common.job_status import Progress as Progress
from common.job_status import WebhookDelivery as WebhookDelivery

MAX_URL_LENGTH = 2048

MODEL_NAME_SCHEMA = "ModelName"
"""The OpenAPI component listing the models this server offers (see `api.main`)."""

OFFERED_MODEL_MARK = {"type": "string", "x-choices": MODEL_NAME_SCHEMA}
"""How a model field's schema looks until `api.main` points it at the server's choices."""

OfferedModel = Annotated[str, WithJsonSchema(OFFERED_MODEL_MARK)]
"""A model name; checked against the server's ALLOWED_MODELS by `check_fields`, since the
choices are configuration, not code."""


class Task(StrEnum):
    """What to produce: text in the spoken language, or an English translation."""

    TRANSCRIBE = "transcribe"
    TRANSLATE = "translate"


class TranscribeForm(BaseModel):
    """The text fields of `POST /transcribe` (sent as multipart form fields beside `file`)."""

    model_config = ConfigDict(extra="forbid")

    engine: EngineName = Field(description="Transcription engine.")
    language: Language | None = Field(
        default=None, description="Spoken language; detected when omitted."
    )
    model: OfferedModel | None = Field(
        default=None,
        max_length=100,
        description="Whisper model; the server's DEFAULT_MODEL when omitted.",
    )
    task: Task = Field(
        default=Task.TRANSCRIBE,
        description="translate gives English text; it needs a multilingual (not .en) model.",
    )
    initial_prompt: str | None = Field(
        default=None,
        max_length=1000,
        description="Text the model sees as preceding speech: names, spelling, style.",
    )
    hotwords: str | None = Field(
        default=None,
        max_length=500,
        description="Words to favour while decoding (whisperx only; 422 with timestamped).",
    )
    vad: bool = Field(
        default=True,
        description="Skip non-speech with voice activity detection; off decodes every 30 s window.",
    )
    word_timestamps: bool = Field(default=True, description="Time each word, not only segments.")
    beam_size: int | None = Field(
        default=None, ge=1, le=10, description="Beam search width; the engine's default if unset."
    )
    temperature: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description=(
            "Sampling temperature (timestamped; whisperx decodes deterministically and accepts "
            "only 0)."
        ),
    )
    callback_url: str | None = Field(
        default=None,
        max_length=MAX_URL_LENGTH,
        description=(
            "http(s) URL that receives the final status JSON by POST, signed with HMAC-SHA256 "
            "(see X-Webhook-Signature); public addresses only unless OUTBOUND_ALLOWLIST says so."
        ),
    )


class TranscribeUrlRequest(TranscribeForm):
    """The JSON body of `POST /transcribe/url`: the audio's URL and the same fields as uploads."""

    url: str = Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description="http(s) URL of the audio; the server downloads it (public addresses only).",
    )


class JobList(BaseModel):
    """One page of jobs, newest first."""

    jobs: list[JobStatus] = Field(description="Status records without `result` (see /jobs/{id}).")
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page."
    )


class JobAccepted(BaseModel):
    """A job was queued; poll its status URL."""

    job_id: str
    status: str = Field(
        default="queued",
        description=(
            "queued for a new job; for a retry with the same Idempotency-Key, the first "
            "job's status now"
        ),
    )


class Health(BaseModel):
    """Whether the service can take and run jobs."""

    status: str = Field(description="ok, or unavailable when Redis cannot be reached")
    redis: bool
    workers: int = Field(description="Live workers listening on the transcription queue.")
    queued: int = Field(default=0, description="Jobs waiting in the queue.")


class Liveness(BaseModel):
    """This API process is up and serving requests."""

    status: str = "ok"


class ErrorBody(BaseModel):
    """The body of every 4xx/5xx answer the API raises itself."""

    detail: str
