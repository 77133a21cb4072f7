"""POST /transcribe/url: download the audio from a URL (or take an object already in the store),
check it like an upload, enqueue it."""

from __future__ import annotations

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from api.http.deps import SubmittingDep
from api.http.schemas import SUBMISSION_ERRORS, JobAccepted, TranscribeUrlRequest, errors
from api.intake.download import download
from api.intake.s3_input import check_input, input_object, is_s3_url
from api.intake.staging import staged_upload
from api.jobs.idempotency import Fingerprint, Idempotency
from api.jobs.submit import check_callback, check_fields, submit
from common.storage import StagedUpload

router = APIRouter(tags=["jobs"])


@router.post(
    "/transcribe/url",
    response_model=JobAccepted,
    summary="Queue the transcription of audio the server downloads from a URL",
    responses={
        **SUBMISSION_ERRORS,
        422: {"description": "Invalid fields, or a URL or callback_url the server refuses."},
        **errors(
            {
                400: "The body is not valid JSON.",
                415: "The content is not audio.",
                502: "The URL's host cannot be resolved, or it answered with an error or failed.",
                503: "Redis or the object store unreachable; retry after Retry-After.",
                504: "The download took longer than allowed.",
                507: "No disk space left for the download.",
            }
        ),
    },
)
async def transcribe_url(
    body: TranscribeUrlRequest, response: Response, on: SubmittingDep
) -> JobAccepted:
    """Download `url` (http or https, public addresses only, URL_DOWNLOAD_TIMEOUT_S, the upload
    size limit), check it is audio, and enqueue the job; poll the `Location` URL.

    The address rules apply after DNS resolution and at every redirect, unless the host is in
    OUTBOUND_ALLOWLIST. An `s3://bucket/key` URL, for a bucket in S3_INPUT_BUCKETS, is read
    where it is with the server's credentials and never deleted. With an Idempotency-Key, a
    retry of the same request returns the first request's job without downloading again.
    """
    settings = on.settings
    submission = check_fields(body, settings)
    await check_callback(submission, on.policy)
    staged: StagedUpload
    if is_s3_url(body.url):
        found = input_object(body.url, settings, on.storage)
        staged, what = found, "object"

        async def fetch() -> str | None:
            await check_input(body.url, found, settings.max_file_size)
            return None  # the probe names its container; the object keeps its own key

    else:
        staged, what = on.storage.uploads.stage(), "download"

        async def fetch() -> str | None:
            downloaded = await download(
                body.url,
                on.policy,
                staged,
                settings.max_file_size,
                settings.url_download_timeout_s,
                settings.url_max_redirects,
            )
            return downloaded.extension

    await run_in_threadpool(on.queue.connection.ping)
    fingerprint = Fingerprint.of_json(body.model_dump(mode="json"))
    idempotency = Idempotency(on.idempotency_key, fingerprint, settings.url_download_timeout_s)
    async with staged_upload(staged, what):
        outcome = await submit(
            on.queue, settings, submission, staged, fetch, idempotency=idempotency, caller=on.caller
        )
    return JobAccepted.answer(response, outcome.job_id, outcome.status, replayed=outcome.replayed)
