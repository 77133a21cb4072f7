"""An OpenAI-style request as an ordinary job: received, checked and queued as `POST /transcribe`
does (limits, probe, ownership, fair turns), then waited for until it ends.

Retries are answered from the first request's job, never transcribed twice: by their
`Idempotency-Key`, or else by the same API key (any client, with keys off) sending the same file
and job fields within OPENAI_DEDUP_WINDOW_S.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from api.errors import InvalidField, ServiceError
from api.http.deps import Submitting
from api.intake.multipart import receive_form
from api.intake.staging import staged_upload
from api.jobs.cancel import cancel_job
from api.jobs.idempotency import Fingerprint, Idempotency
from api.jobs.long_poll import JobEndWaiter, read_status
from api.jobs.queue import find_job
from api.jobs.submit import Accepted, Submission, check_fields, submit
from api.openai.requests import AudioForm, as_openai_field, job_fields, parse_form
from common.contract import TERMINAL, Task
from common.job_status import JobStatus

log = logging.getLogger(__name__)

DEDUP_PREFIX = "openai-dedup"
CLAIM_RETRY_S = 0.25
"""While an identical request is still being received: how often to look again."""
DISCONNECT_CHECK_S = 2.0
"""How often a waiting request looks whether its client is still there, seconds."""


def dedup_key(fingerprint: Fingerprint) -> str:
    """The implicit idempotency key of a request without one: its file and job fields."""
    return f"{DEDUP_PREFIX}:{fingerprint.file_sha256}:{fingerprint.fields_sha256}"


def job_fingerprint(file_sha256: str, submission: Submission) -> Fingerprint:
    """What makes two requests the same job: the file's bytes and the job's fields (not how
    the answer is written: a retry asking for srt instead of json reuses the job)."""
    return Fingerprint.of(
        file_sha256,
        {
            "engine": submission.engine.value,
            "model": submission.model,
            "options": submission.options.model_dump_json(),
        },
    )


async def submit_audio(request: Request, on: Submitting, task: Task) -> tuple[AudioForm, Accepted]:
    """Receive the multipart body, check it and queue its job (or find the earlier one)."""
    settings = on.settings
    await run_in_threadpool(on.queue.connection.ping)
    async with staged_upload(on.storage.uploads.stage()) as staged:
        received = await receive_form(request, staged, settings.max_file_size, hash_file=True)
        form = parse_form(received.fields, received.repeated, task)
        if not received.has_file:
            raise InvalidField("file", "Field required", kind="missing")
        try:
            submission = check_fields(job_fields(form, task, settings), settings)
        except InvalidField as error:
            raise as_openai_field(error) from None
        fingerprint = job_fingerprint(received.sha256 or "", submission)
        if on.idempotency_key is not None:
            idempotency = Idempotency(on.idempotency_key, fingerprint, 0)
        elif settings.openai_dedup_window_s > 0:
            idempotency = Idempotency(
                dedup_key(fingerprint), fingerprint, 0, keep_s=settings.openai_dedup_window_s
            )
        else:
            idempotency = Idempotency(None, fingerprint, 0)

        async def already_received() -> str | None:
            return received.extension

        while True:
            try:
                accepted = await submit(
                    on.queue,
                    settings,
                    submission,
                    staged,
                    already_received,
                    idempotency=idempotency,
                    caller=on.caller,
                )
            except ServiceError as error:
                # An identical request is being received right now: its job is moments away,
                # and answering 409 would cost the client one of its few retries.
                if error.status_code == 409 and "Retry-After" in error.headers:
                    await asyncio.sleep(CLAIM_RETRY_S)
                    continue
                raise
            return form, accepted


async def wait_for_end(
    request: Request, on: Submitting, waiter: JobEndWaiter, job_id: str
) -> JobStatus | None:
    """The job's status once it has ended, or None when the client went away first (the job
    is then left to finish, or canceled with OPENAI_CANCEL_ON_DISCONNECT)."""
    while True:
        status = await run_in_threadpool(read_status, on.queue, job_id, on.caller)
        if status is None or status.status in TERMINAL:
            return status
        await waiter.wait(job_id, DISCONNECT_CHECK_S)
        if await request.is_disconnected():
            await client_left(on, job_id)
            return None


async def client_left(on: Submitting, job_id: str) -> None:
    """The client of a waiting request disconnected: cancel its job if the settings say so."""
    if not on.settings.openai_cancel_on_disconnect:
        log.info("client of job %s disconnected; the job goes on (see /jobs)", job_id)
        return
    job = await run_in_threadpool(find_job, on.queue, job_id, on.caller)
    if job is None:
        return
    try:
        outcome = await run_in_threadpool(cancel_job, on.settings, job)
    except ServiceError:
        return  # it ended meanwhile
    log.info("client of job %s disconnected; job %s", job_id, outcome)
