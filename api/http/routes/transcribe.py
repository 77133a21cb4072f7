"""POST /transcribe: stream the upload into the store, check it, enqueue it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.errors import InvalidField, invalid_body
from api.http.deps import SubmittingDep
from api.http.schemas import SUBMISSION_ERRORS, JobAccepted, TranscribeForm, errors
from api.intake.multipart import ReceivedForm, receive_form
from api.intake.staging import staged_upload
from api.jobs.idempotency import Fingerprint, Idempotency
from api.jobs.submit import check_callback, check_fields, submit

router = APIRouter(tags=["jobs"])


def upload_schema() -> dict[str, Any]:
    """The multipart body's JSON schema: `file` and TranscribeForm's fields, whose enums refer
    to the components that /transcribe/url's JSON body brings into the document."""
    schema = TranscribeForm.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    schema["title"] = "TranscribeUpload"
    schema["properties"] = {
        "file": {"type": "string", "format": "binary", "description": "The audio file."},
        **schema["properties"],
    }
    schema["required"] = ["file", *schema.get("required", [])]
    return schema


def _parse_fields(form: ReceivedForm) -> TranscribeForm:
    """Validate the text fields as FastAPI validates a JSON body (and in its 422 shape)."""
    fields = {key: value for key, value in form.fields.items() if value.strip() != ""}
    try:
        params = TranscribeForm.model_validate(fields)
    except ValidationError as error:
        raise invalid_body(error) from None
    if not form.has_file:
        raise InvalidField("file", "Field required", kind="missing")
    return params


@router.post(
    "/transcribe",
    response_model=JobAccepted,
    summary="Upload audio and queue its transcription",
    responses={
        **SUBMISSION_ERRORS,
        **errors(
            {
                400: "Unsupported extension or malformed form.",
                415: "Not multipart, or the content is not audio.",
                507: "No disk space left for the upload.",
            }
        ),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": upload_schema()}},
        }
    },
)
async def transcribe(request: Request, response: Response, on: SubmittingDep) -> JobAccepted:
    """Stream the upload into the uploads store, check it is audio, and enqueue the job.

    Returns at once with the job id; poll the `Location` URL (`/status/{job_id}`).
    """
    await run_in_threadpool(on.queue.connection.ping)
    async with staged_upload(on.storage.uploads.stage()) as staged:
        form = await receive_form(
            request,
            staged,
            on.settings.max_file_size,
            # The file's hash is part of an idempotency key's fingerprint, and needed only there.
            hash_file=on.idempotency_key is not None,
        )
        submission = check_fields(_parse_fields(form), on.settings)
        await check_callback(submission, on.policy)

        async def already_received() -> str | None:
            return form.extension

        fingerprint = Fingerprint.of(form.sha256 or "", form.fields)
        outcome = await submit(
            on.queue,
            on.settings,
            submission,
            staged,
            already_received,
            idempotency=Idempotency(on.idempotency_key, fingerprint, 0),
            caller=on.caller,
        )
    return JobAccepted.answer(response, outcome.job_id, outcome.status, replayed=outcome.replayed)
