"""What both submission endpoints share: checking the job's fields, and accepting a saved file.

`check_fields` turns validated form or JSON fields into a Submission, refusing with 422 the
combinations the model alone cannot catch (model not offered, English-only model asked for
another language or a translation, an option the engine lacks, a callback without a secret).
`accept_saved_file` takes a file already in the uploads folder (an upload or a download),
checks it is audio within the limits, names it after the job and enqueues the job.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Response
from fastapi.exceptions import RequestValidationError
from rq import Queue
from starlette.concurrency import run_in_threadpool

from api.jobs import enqueue_transcription
from api.probe import ProbeError, probe_audio
from api.schemas import JobAccepted, TranscribeForm
from common.catalog import KNOWN_MODELS, EngineName, is_english_only
from common.media import ALLOWED_DEMUXERS
from common.outbound import OutboundPolicy, OutboundRefused
from config import Settings

OPTION_FIELDS = frozenset(
    {"task", "initial_prompt", "hotwords", "vad", "word_timestamps", "beam_size", "temperature"}
)
"""Fields of the request that travel to the worker as TranscribeOptions."""

# Extension to give a downloaded file from the container ffprobe found (first name it lists).
EXTENSION_OF_DEMUXER: dict[str, str] = {
    "matroska": "mka",
    "mov": "m4a",
    "w64": "wav",
    **{name: name for name in ALLOWED_DEMUXERS if name not in ("matroska", "mov", "w64")},
}


def validation_error(loc: tuple[str, ...], message: str, value: object = None) -> Exception:
    """A 422 for one body field, shaped like FastAPI's own."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", *loc), "msg": message, "input": value}]
    )


@dataclass(frozen=True)
class Submission:
    """A job's checked parameters, as they go on the queue."""

    engine: str
    model: str
    language: str | None
    options: dict[str, Any] = field(default_factory=dict)
    callback_url: str | None = None


def offered_models(settings: Settings) -> list[str]:
    """The model names clients may ask for: ALLOWED_MODELS, or every known model when unset."""
    allowed = settings.allowed_model_names
    if not allowed:
        return list(KNOWN_MODELS)
    return [name for name in KNOWN_MODELS if name in allowed] + sorted(
        allowed.difference(KNOWN_MODELS)
    )


def check_fields(params: TranscribeForm, settings: Settings) -> Submission:
    """Cross-field rules on top of the model's own validation; raises a 422 for the first broken.

    No I/O: the callback's address is checked separately (`check_callback`).
    """
    model = params.model if params.model is not None else settings.default_model
    offered = offered_models(settings)
    if model not in offered:
        raise validation_error(
            ("model",), f"model {model!r} is not offered here; choose one of {offered}", model
        )
    if params.language is not None and params.language.value != "en" and is_english_only(model):
        raise validation_error(
            ("language",),
            f"model {model!r} only transcribes English; use a multilingual model for "
            f"{params.language.value!r}",
            params.language.value,
        )
    if params.task.value == "translate" and is_english_only(model):
        raise validation_error(
            ("task",),
            f"model {model!r} is English-only and cannot translate; use a multilingual model",
            params.task.value,
        )
    if params.hotwords and params.engine != EngineName.WHISPERX:
        raise validation_error(
            ("hotwords",),
            f"hotwords are supported by the whisperx engine only, not {params.engine.value!r}",
            params.hotwords,
        )
    if params.temperature and params.engine == EngineName.WHISPERX:
        raise validation_error(
            ("temperature",),
            "whisperx decodes deterministically (batched beam search): only temperature 0 is "
            "accepted; use engine=timestamped to sample",
            params.temperature,
        )
    if params.callback_url and settings.webhook_secret is None:
        raise validation_error(
            ("callback_url",),
            "this server has no WEBHOOK_SECRET to sign webhooks with, so it takes no callback_url",
            params.callback_url,
        )
    options = params.model_dump(mode="json", include=set(OPTION_FIELDS), exclude_none=True)
    return Submission(
        engine=params.engine.value,
        model=model,
        language=params.language.value if params.language is not None else None,
        options=options,
        callback_url=params.callback_url or None,
    )


async def check_callback(submission: Submission, policy: OutboundPolicy) -> None:
    """422 unless the callback URL is http(s) and resolves to addresses the policy allows.

    Checked again at every delivery, since DNS may change in between.
    """
    if submission.callback_url is None:
        return
    try:
        await run_in_threadpool(policy.vet, submission.callback_url)
    except OutboundRefused as refused:
        raise validation_error(
            ("callback_url",), f"callback_url refused: {refused.reason}", submission.callback_url
        ) from None


async def accept_saved_file(
    queue: Queue,
    settings: Settings,
    *,
    job_id: str,
    path: Path,
    extension: str | None,
    submission: Submission,
) -> Path:
    """Probe the file at `path`, rename it after the job and enqueue the job; the final path.

    Raises HTTPException 415 (not audio in an allowed container), 413 (too long), 507 (no
    space). `extension` None takes it from the container. On an error after the rename the
    renamed file is removed; before it, `path` is the caller's to remove.
    """
    try:
        info = await probe_audio(path, settings.ffprobe_timeout_s)
    except ProbeError as error:
        raise HTTPException(415, error.detail) from None
    if info.duration_s is not None and info.duration_s > settings.max_audio_duration_s:
        raise HTTPException(
            413,
            f"audio too long: {info.duration_s:.0f} s; the limit is "
            f"{settings.max_audio_duration_s:.0f} s",
        )
    if extension is None:
        found = [name for name in info.format_name.split(",") if name in EXTENSION_OF_DEMUXER]
        extension = EXTENSION_OF_DEMUXER[found[0]] if found else "bin"
    final_path = settings.upload_dir / f"{job_id}.{extension}"
    try:
        os.rename(path, final_path)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise HTTPException(507, "the server has no space left for this upload") from None
        raise
    try:
        await run_in_threadpool(
            enqueue_transcription,
            queue,
            settings,
            job_id=job_id,
            audio_path=str(final_path),
            engine=submission.engine,
            model=submission.model,
            language=submission.language,
            duration_s=info.duration_s,
            options=submission.options,
            callback_url=submission.callback_url,
        )
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            final_path.unlink()
        raise
    return final_path


def accepted(response: Response, job_id: str, *, status: str | None = None) -> JobAccepted:
    """The 200 answer for an accepted job: its id, and its status URL in `Location`.

    `status` is given for the answer to a retry with the same Idempotency-Key: the earlier
    job's status now, which is marked as a replay.
    """
    response.headers["Location"] = f"/status/{job_id}"
    if status is None:
        return JobAccepted(job_id=job_id)
    response.headers["Idempotent-Replayed"] = "true"
    return JobAccepted(job_id=job_id, status=status)
