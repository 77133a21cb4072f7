"""POST /v1/audio/transcriptions and /v1/audio/translations: OpenAI's audio API over the queue."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from api.http.deps import EventReaderDep, JobWaiterDep, SubmittingDep
from api.openai import responses
from api.openai.errors import documented, ended_without_result
from api.openai.jobs import submit_audio, wait_for_end
from api.openai.requests import GRANULARITIES_FIELD, ResponseFormat
from api.openai.stream import stream_answer
from common.contract import PublicStatus, Task, TranscribeOptions

router = APIRouter(prefix="/v1/audio", tags=["openai"])

JOB_ID_HEADER = "X-Job-Id"
"""The job a /v1 request became: its status and result stay under /jobs/{id}."""


def _speaker_fields() -> dict[str, Any]:
    """Our diarization options as extra form fields, described as on POST /transcribe."""
    described = TranscribeOptions.model_fields
    counts = {"type": "integer", "minimum": 1, "maximum": 20}
    return {
        "diarize": {
            "type": "boolean",
            "default": False,
            "description": f"{described['diarize'].description} verbose_json lists `speaker`.",
        },
        **{
            name: counts | {"description": described[name].description}
            for name in ("num_speakers", "min_speakers", "max_speakers")
        },
    }


def _form_schema(task: Task) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "file": {"type": "string", "format": "binary", "description": "The audio file."},
        "model": {
            "type": "string",
            "description": "`whisper-1`, `engine/model` or a model name (GET /v1/models).",
        },
        "prompt": {"type": "string", "description": "Text the model sees as preceding speech."},
        "response_format": {
            "type": "string",
            "enum": [fmt.value for fmt in ResponseFormat],
            "default": "json",
        },
        "temperature": {"type": "number", "minimum": 0, "maximum": 1, "default": 0},
        "engine": {"type": "string", "enum": ["whisperx", "timestamped"]},
        **_speaker_fields(),
    }
    if task == Task.TRANSCRIBE:
        fields["language"] = {"type": "string", "description": "ISO-639-1 code, e.g. `en`."}
        fields[GRANULARITIES_FIELD] = {
            "type": "array",
            "items": {"type": "string", "enum": ["word", "segment"]},
        }
        fields["stream"] = {"type": "boolean", "default": False}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file", "model"],
                        "properties": fields,
                    }
                }
            },
        }
    }


ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The transcript in `response_format` (JSON for json and verbose_json).",
        "content": {"application/json": {}, "text/plain": {}, "text/vtt": {}},
    },
    **documented(
        {
            404: "`model_not_found`.",
            409: "The job was canceled, or an Idempotency-Key reused for another request.",
            413: "File or audio longer than the limits.",
            415: "Not multipart, or the content is not audio.",
            500: "The transcription job failed (`job_failed`).",
            507: "No disk space left for the upload.",
        }
    ),
}


async def _answer(
    request: Request,
    on: SubmittingDep,
    waiter: JobWaiterDep,
    reader: EventReaderDep,
    task: Task,
) -> Response:
    form, accepted = await submit_audio(request, on, task)
    if form.stream and task == Task.TRANSCRIBE:
        return stream_answer(reader, on, accepted.job_id)
    status = await wait_for_end(request, on, waiter, accepted.job_id)
    if status is None:  # the client is gone: nobody reads this
        return Response(status_code=499, headers={JOB_ID_HEADER: accepted.job_id})
    if status.status != PublicStatus.FINISHED or status.result is None:
        raise ended_without_result(accepted.job_id, status.status, status.error, JOB_ID_HEADER)
    answer = responses.answer(status.result, form, task)
    answer.headers[JOB_ID_HEADER] = accepted.job_id
    return answer


@router.post(
    "/transcriptions",
    summary="Transcribe audio (OpenAI-compatible)",
    response_class=Response,
    responses=ANSWERS,
    openapi_extra=_form_schema(Task.TRANSCRIBE),
)
async def create_transcription(
    request: Request, on: SubmittingDep, waiter: JobWaiterDep, reader: EventReaderDep
) -> Response:
    """OpenAI's `audio.transcriptions.create`, run as a job on the queue; answers when it ends."""
    return await _answer(request, on, waiter, reader, Task.TRANSCRIBE)


@router.post(
    "/translations",
    summary="Translate audio into English text (OpenAI-compatible)",
    response_class=Response,
    responses=ANSWERS,
    openapi_extra=_form_schema(Task.TRANSLATE),
)
async def create_translation(
    request: Request, on: SubmittingDep, waiter: JobWaiterDep, reader: EventReaderDep
) -> Response:
    """OpenAI's `audio.translations.create` (needs a multilingual model), run as a job."""
    return await _answer(request, on, waiter, reader, Task.TRANSLATE)
