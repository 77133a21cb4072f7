"""Request and response models of the HTTP API."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from common.catalog import EngineName
from common.contract import PublicStatus, TranscribeOptions
from common.job_status import JobStatus

MAX_URL_LENGTH = 2048

MODEL_NAME_SCHEMA = "ModelName"
"""The OpenAPI component listing the models this server offers (see `api.http.app`)."""

OFFERED_MODEL_MARK = {"type": "string", "x-choices": MODEL_NAME_SCHEMA}
"""How a model field's schema looks until `api.http.app` points it at the server's choices."""

OfferedModel = Annotated[str, Field(max_length=100), WithJsonSchema(OFFERED_MODEL_MARK)]
"""A model name; checked against the server's ALLOWED_MODELS by `check_fields`, since the
choices are configuration, not code."""


class TranscribeForm(TranscribeOptions):
    """The text fields of `POST /transcribe` (sent as multipart form fields beside `file`): the
    job's engine, language and model, its decoding options, and where to report its end."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    engine: EngineName = Field(description="Transcription engine.")
    model: OfferedModel | None = Field(
        default=None, description="Whisper model; the server's DEFAULT_MODEL when omitted."
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

    @classmethod
    def answer(
        cls, response: Response, job_id: str, status: PublicStatus, *, replayed: bool
    ) -> JobAccepted:
        """The 200 for an accepted job, with its status URL in `Location`; a retry with the
        same Idempotency-Key is marked `Idempotent-Replayed`."""
        response.headers["Location"] = f"/status/{job_id}"
        if replayed:
            response.headers["Idempotent-Replayed"] = "true"
        return cls(job_id=job_id, status=status)

    job_id: str
    status: PublicStatus = Field(
        default=PublicStatus.QUEUED,
        description=(
            "queued for a new job; for a retry with the same Idempotency-Key, the first "
            "job's status now"
        ),
    )


class Health(BaseModel):
    """Whether the service can take and run jobs."""

    status: str = Field(description="ok, or unavailable when Redis cannot be reached")
    redis: bool
    workers: int = Field(
        description="Live workers ready for jobs (their PRELOAD_MODELS loaded), of any model."
    )
    queued: int = Field(default=0, description="Jobs waiting, every engine and model together.")
    servable: dict[str, int] = Field(
        default_factory=dict,
        description="Each engine/model that live workers serve, with how many of them serve it.",
    )


class Liveness(BaseModel):
    """This API process is up and serving requests."""

    status: str = "ok"


class ErrorBody(BaseModel):
    """The body of every 4xx/5xx answer the API raises itself."""

    detail: str


def errors(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for error answers, each with an ErrorBody."""
    return {code: {"model": ErrorBody, "description": text} for code, text in descriptions.items()}


SUBMISSION_ERRORS = errors(
    {
        409: "Idempotency-Key reused for another request, or its first request still handled.",
        413: "File or audio longer than the limits.",
        503: (
            "Redis or the object store unreachable, or too few Redis replicas took the job "
            "(REDIS_MIN_REPLICAS); nothing was kept: retry after Retry-After."
        ),
    }
)
"""Answers both submission routes can give, beside FastAPI's 422."""

KEY_ERRORS = errors(
    {
        401: "REQUIRE_API_KEY is on and the API key is missing, unknown or revoked.",
        429: "A limit of the API key was reached; retry after Retry-After.",
    }
)
"""Answers every route behind an API key can give."""
