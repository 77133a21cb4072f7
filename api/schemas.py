"""Request and response models of the HTTP API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from common.catalog import EngineName, Language, ModelName
from common.transcript import Transcript


class TranscribeForm(BaseModel):
    """The text fields of `POST /transcribe` (sent as multipart form fields beside `file`)."""

    engine: EngineName = Field(description="Transcription engine.")
    language: Language | None = Field(
        default=None, description="Spoken language; detected when omitted."
    )
    model: ModelName | None = Field(
        default=None, description="Whisper model; the server's DEFAULT_MODEL when omitted."
    )


class JobAccepted(BaseModel):
    """A job was queued; poll its status URL."""

    job_id: str
    status: str = "queued"


class Progress(BaseModel):
    """How far a job has come."""

    stage: str = Field(description="queued, loading_model, decoding, transcribing, aligning, done")
    percent: float | None = Field(default=None, ge=0, le=100)


class JobStatus(BaseModel):
    """Everything known about a job."""

    job_id: str
    status: str = Field(
        description="queued, started, finished, failed; also deferred, scheduled, stopped, canceled"
    )
    engine: str | None = None
    model: str | None = None
    language: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    progress: Progress | None = None
    result: Transcript | None = None
    error: str | None = Field(default=None, description="Why the job failed, for people.")


class Health(BaseModel):
    """Whether the service can take and run jobs."""

    status: str = Field(description="ok, or unavailable when Redis cannot be reached")
    redis: bool
    workers: int = Field(description="Live workers listening on the transcription queue.")
    queued: int = Field(default=0, description="Jobs waiting in the queue.")


class ErrorBody(BaseModel):
    """The body of every 4xx/5xx answer the API raises itself."""

    detail: str
