"""POST /transcribe: stream the upload to disk, check it, enqueue it."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import OutboundPolicyDep, QueueDep, SettingsDep
from api.idempotency import (
    Fingerprint,
    IdempotencyKeyHeader,
    KeyedSubmission,
)
from api.schemas import ErrorBody, JobAccepted, TranscribeForm
from api.submission import (
    Submission,
    accept_saved_file,
    accepted,
    check_callback,
    check_fields,
)
from api.uploads import ReceivedForm, UploadError, receive_form
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


def _parse_fields(form: ReceivedForm, settings: Settings) -> Submission:
    """Validate the text fields (422 on the first problem); returns the job's parameters."""
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
    return check_fields(params, settings)


@router.post(
    "/transcribe",
    response_model=JobAccepted,
    summary="Upload audio and queue its transcription",
    responses={
        400: {"model": ErrorBody, "description": "Unsupported extension or malformed form."},
        409: {"model": ErrorBody, "description": "Idempotency-Key reused for another request."},
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
    request: Request,
    response: Response,
    settings: SettingsDep,
    queue: QueueDep,
    policy: OutboundPolicyDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JobAccepted:
    """Stream the upload to the shared folder, check it is audio, and enqueue the job.

    Returns at once with the job id; poll the `Location` URL (`/status/{job_id}`).
    """
    await run_in_threadpool(queue.connection.ping)
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    try:
        form = await receive_form(
            request,
            settings.upload_dir,
            settings.max_file_size,
            # The file's hash is part of an idempotency key's fingerprint, and needed only there.
            hash_file=idempotency_key is not None,
        )
    except UploadError as error:
        raise HTTPException(error.status_code, error.detail) from None
    keyed = KeyedSubmission(
        queue,
        settings,
        idempotency_key,
        Fingerprint.of(form.sha256 or "", form.fields),
        # A claim outlives its request's probe.
        pending_ttl_s=int(settings.ffprobe_timeout_s) + 30,
    )
    try:
        submission = _parse_fields(form, settings)
        await check_callback(submission, policy)
        assert form.file_path is not None
        job_id = str(uuid.uuid4())
        replay = await keyed.begin(job_id)
        if replay is not None:
            form.discard()
            return accepted(response, replay.job_id, status=replay.status)
        form.file_path = await accept_saved_file(
            queue,
            settings,
            job_id=job_id,
            path=form.file_path,
            extension=form.extension,
            submission=submission,
        )
    except BaseException:
        form.discard()
        await keyed.abort()
        raise
    await keyed.commit()
    return accepted(response, job_id)
