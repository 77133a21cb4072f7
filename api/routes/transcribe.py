"""POST /transcribe: stream the upload to disk, check it, enqueue it."""

from __future__ import annotations

import os
import uuid
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import QueueDep, SettingsDep
from api.jobs import enqueue_transcription
from api.probe import ProbeError, probe_audio
from api.schemas import ErrorBody, JobAccepted, TranscribeForm
from api.uploads import ReceivedForm, UploadError, receive_form
from common.catalog import KNOWN_MODELS, is_english_only
from config import Settings

router = APIRouter(tags=["jobs"])

UPLOAD_SCHEMA_NAME = "TranscribeUpload"


def upload_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """The multipart body's JSON schema and the definitions it refers to, for the OpenAPI doc."""
    schema = TranscribeForm.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions: dict[str, Any] = schema.pop("$defs", {})
    schema["title"] = UPLOAD_SCHEMA_NAME
    schema["properties"] = {
        "file": {"type": "string", "format": "binary", "description": "The audio file."},
        **schema["properties"],
    }
    schema["required"] = ["file", *schema.get("required", [])]
    return schema, definitions


def _validation_error(loc: tuple[str, ...], message: str, value: object = None) -> Exception:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", *loc), "msg": message, "input": value}]
    )


def _parse_fields(form: ReceivedForm, settings: Settings) -> tuple[TranscribeForm, str]:
    """Validate the text fields; returns them with the model name to run."""
    fields = {key: value for key, value in form.fields.items() if value.strip() != ""}
    try:
        params = TranscribeForm.model_validate(fields)
    except ValidationError as error:
        raise RequestValidationError(
            [{**item, "loc": ("body", *item["loc"])} for item in error.errors(include_url=False)]
        ) from None
    if form.file_path is None:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body", "file"), "msg": "Field required", "input": None}]
        )
    model = params.model.value if params.model is not None else settings.default_model
    allowed = settings.allowed_model_names or frozenset(KNOWN_MODELS)
    if model not in allowed:
        raise _validation_error(
            ("model",), f"model {model!r} is not offered here; choose one of {sorted(allowed)}"
        )
    if params.language is not None and params.language.value != "en" and is_english_only(model):
        raise _validation_error(
            ("language",),
            f"model {model!r} only transcribes English; use a multilingual model for "
            f"{params.language.value!r}",
            params.language.value,
        )
    return params, model


@router.post(
    "/transcribe",
    response_model=JobAccepted,
    summary="Upload audio and queue its transcription",
    responses={
        400: {"model": ErrorBody, "description": "Unsupported extension or malformed form."},
        413: {"model": ErrorBody, "description": "File or audio longer than the limits."},
        415: {"model": ErrorBody, "description": "Not multipart, or the content is not audio."},
        503: {"model": ErrorBody, "description": "Redis unreachable; retry after Retry-After."},
        507: {"model": ErrorBody, "description": "No disk space left for the upload."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"$ref": f"#/components/schemas/{UPLOAD_SCHEMA_NAME}"}
                }
            },
        }
    },
)
async def transcribe(
    request: Request, response: Response, settings: SettingsDep, queue: QueueDep
) -> JobAccepted:
    """Stream the upload to the shared folder, check it is audio, and enqueue the job.

    Returns at once with the job id; poll the `Location` URL (`/status/{job_id}`).
    """
    await run_in_threadpool(queue.connection.ping)
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    try:
        form = await receive_form(request, settings.upload_dir, settings.max_file_size)
    except UploadError as error:
        raise HTTPException(error.status_code, error.detail) from None
    try:
        params, model = _parse_fields(form, settings)
        assert form.file_path is not None
        try:
            info = await probe_audio(form.file_path, settings.ffprobe_timeout_s)
        except ProbeError as error:
            raise HTTPException(415, error.detail) from None
        if info.duration_s is not None and info.duration_s > settings.max_audio_duration_s:
            raise HTTPException(
                413,
                f"audio too long: {info.duration_s:.0f} s; the limit is "
                f"{settings.max_audio_duration_s:.0f} s",
            )
        job_id = str(uuid.uuid4())
        final_path = settings.upload_dir / f"{job_id}.{form.extension}"
        os.rename(form.file_path, final_path)
        form.file_path = final_path
        await run_in_threadpool(
            enqueue_transcription,
            queue,
            settings,
            job_id=job_id,
            audio_path=str(final_path),
            engine=params.engine.value,
            model=model,
            language=params.language.value if params.language is not None else None,
            duration_s=info.duration_s,
        )
    except BaseException:
        form.discard()
        raise
    response.headers["Location"] = f"/status/{job_id}"
    return JobAccepted(job_id=job_id)
