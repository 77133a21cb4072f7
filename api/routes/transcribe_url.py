"""POST /transcribe/url: download the audio from a URL, check it like an upload, enqueue it."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException, Response
from rq import Queue
from starlette.concurrency import run_in_threadpool

from api.deps import OutboundPolicyDep, QueueDep, SettingsDep
from api.idempotency import (
    Fingerprint,
    IdempotencyKeyHeader,
    KeyedSubmission,
)
from api.schemas import ErrorBody, JobAccepted, TranscribeUrlRequest
from api.submission import (
    Submission,
    accept_saved_file,
    accepted,
    check_callback,
    check_fields,
    validation_error,
)
from api.url_input import DownloadError, download
from common.outbound import OutboundPolicy, OutboundRefused, Unresolvable
from config import Settings

router = APIRouter(tags=["jobs"])


@router.post(
    "/transcribe/url",
    response_model=JobAccepted,
    summary="Queue the transcription of audio the server downloads from a URL",
    responses={
        400: {"model": ErrorBody, "description": "The body is not valid JSON."},
        409: {"model": ErrorBody, "description": "Idempotency-Key reused for another request."},
        413: {"model": ErrorBody, "description": "File or audio longer than the limits."},
        415: {"model": ErrorBody, "description": "The content is not audio."},
        422: {"description": "Invalid fields, or a URL or callback_url the server refuses."},
        502: {
            "model": ErrorBody,
            "description": "The URL's host cannot be resolved, or it answered with an error or "
            "failed.",
        },
        503: {"model": ErrorBody, "description": "Redis unreachable; retry after Retry-After."},
        504: {"model": ErrorBody, "description": "The download took longer than allowed."},
        507: {"model": ErrorBody, "description": "No disk space left for the download."},
    },
)
async def transcribe_url(
    body: TranscribeUrlRequest,
    response: Response,
    settings: SettingsDep,
    queue: QueueDep,
    policy: OutboundPolicyDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JobAccepted:
    """Download `url` (http or https, public addresses only, URL_DOWNLOAD_TIMEOUT_S, the upload
    size limit), check it is audio, and enqueue the job; poll the `Location` URL.

    The address rules apply after DNS resolution and at every redirect, unless the host is in
    OUTBOUND_ALLOWLIST. With an Idempotency-Key, a retry of the same request returns the first
    request's job without downloading again.
    """
    submission = check_fields(body, settings)
    await check_callback(submission, policy)
    await run_in_threadpool(queue.connection.ping)
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    keyed = KeyedSubmission(
        queue,
        settings,
        idempotency_key,
        Fingerprint.of_json(body.model_dump(mode="json")),
        # A claim outlives its request's download and probe.
        pending_ttl_s=int(settings.url_download_timeout_s + settings.ffprobe_timeout_s) + 30,
    )
    job_id = str(uuid.uuid4())
    replay = await keyed.begin(job_id)
    if replay is not None:
        return accepted(response, replay.job_id, status=replay.status)
    try:
        await _download_and_enqueue(body, settings, queue, policy, job_id, submission)
    except BaseException:
        await keyed.abort()
        raise
    await keyed.commit()
    return accepted(response, job_id)


async def _download_and_enqueue(
    body: TranscribeUrlRequest,
    settings: Settings,
    queue: Queue,
    policy: OutboundPolicy,
    job_id: str,
    submission: Submission,
) -> None:
    """Fetch the URL into the uploads folder, check it, and enqueue job `job_id`."""
    try:
        downloaded = await download(
            body.url,
            policy,
            settings.upload_dir,
            settings.max_file_size,
            settings.url_download_timeout_s,
            settings.url_max_redirects,
        )
    except Unresolvable as unreachable:
        raise HTTPException(502, f"the audio URL cannot be reached: {unreachable.reason}") from None
    except OutboundRefused as refused:
        raise validation_error(("url",), f"url refused: {refused.reason}", body.url) from None
    except DownloadError as error:
        raise HTTPException(error.status_code, error.detail) from None
    try:
        await accept_saved_file(
            queue,
            settings,
            job_id=job_id,
            path=downloaded.path,
            extension=downloaded.extension,
            submission=submission,
        )
    except BaseException:
        downloaded.discard()
        raise
