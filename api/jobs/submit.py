"""The submission service: where a checked request and its staged audio become a queued job.

Both submission routes call `submit`; the fields are checked first by `check_fields` (the
rules no single field's schema can state) and `check_callback`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.exceptions import RedisError
from rq import Queue
from rq.job import Job
from starlette.concurrency import run_in_threadpool

from api.errors import InvalidField, ServiceError
from api.http.schemas import TranscribeForm
from api.intake.probe import probe_audio
from api.jobs.cancel import cancel_job, erase_job
from api.jobs.idempotency import Idempotency, KeyedSubmission
from api.jobs.queue import Caller, enqueue_transcription
from api.keys.quotas import Admission, Quotas
from common.catalog import EngineName, Route
from common.contract import JobRequest, Keys, PublicStatus, TranscribeOptions
from common.media import ALLOWED_DEMUXERS
from common.outbound import OutboundPolicy, OutboundRefused
from common.redis_conn import replicas_hold
from common.routing import live_workers, serving
from common.storage import StagedUpload
from config import Settings

log = logging.getLogger(__name__)

# Extension to give a downloaded file from the container ffprobe found (first name it lists).
EXTENSION_OF_DEMUXER: dict[str, str] = {
    "matroska": "mka",
    "mov": "m4a",
    "w64": "wav",
    **{name: name for name in ALLOWED_DEMUXERS if name not in ("matroska", "mov", "w64")},
}

Fetch = Callable[[], Awaitable[str | None]]
"""Brings the audio into the staged upload (or checks it is there); returns its extension, if
known."""


@dataclass(frozen=True)
class Submission:
    """A job's checked parameters: the request less its audio, and where to report its end."""

    engine: EngineName
    model: str
    options: TranscribeOptions
    callback_url: str | None = None

    @property
    def route(self) -> Route:
        """The engine and model the job needs a worker for."""
        return Route(self.engine, self.model)

    def request(self, audio_path: str, *, keep_audio: bool = False) -> JobRequest:
        """The job request for the audio at `audio_path` (the client's own with `keep_audio`)."""
        return JobRequest(
            audio_path=audio_path,
            engine=self.engine,
            model=self.model,
            options=self.options,
            keep_audio=keep_audio or None,
        )


@dataclass(frozen=True)
class Accepted:
    """A submission's outcome: the job, and whether an earlier request with its key made it."""

    job_id: str
    status: PublicStatus
    replayed: bool


def offered_models(settings: Settings) -> list[str]:
    """The model names clients may ask for: the known names and MODELS' (ALLOWED_MODELS
    narrows them), on at least one engine."""
    return settings.catalogue().models()


def check_fields(params: TranscribeForm, settings: Settings) -> Submission:
    """Cross-field rules on top of the model's own validation; raises a 422 for the first broken.

    No I/O: the callback's address is checked separately (`check_callback`).
    """
    model = params.model if params.model is not None else settings.default_model
    catalogue = settings.catalogue()
    offered = catalogue.models()
    if model not in offered:
        raise InvalidField(
            "model", f"model {model!r} is not offered here; choose one of {offered}", model
        )
    if not catalogue.offers(Route(params.engine, model)):
        engines = [engine.value for engine in catalogue.engines_of(model)]
        raise InvalidField(
            "model",
            f"model {model!r} is not offered on engine {params.engine.value!r}; it runs on "
            f"{engines}",
            model,
        )
    is_english_only = catalogue.english_only
    if params.language is not None and params.language.value != "en" and is_english_only(model):
        raise InvalidField(
            "language",
            f"model {model!r} only transcribes English; use a multilingual model for "
            f"{params.language.value!r}",
            params.language.value,
        )
    if params.task.value == "translate" and is_english_only(model):
        raise InvalidField(
            "task",
            f"model {model!r} is English-only and cannot translate; use a multilingual model",
            params.task.value,
        )
    if params.hotwords and params.engine != EngineName.WHISPERX:
        raise InvalidField(
            "hotwords",
            f"hotwords are supported by the whisperx engine only, not {params.engine.value!r}",
            params.hotwords,
        )
    if params.temperature and params.engine == EngineName.WHISPERX:
        raise InvalidField(
            "temperature",
            "whisperx decodes deterministically (batched beam search): only temperature 0 is "
            "accepted; use engine=timestamped to sample",
            params.temperature,
        )
    if params.callback_url and settings.webhook_secret is None:
        raise InvalidField(
            "callback_url",
            "this server has no WEBHOOK_SECRET to sign webhooks with, so it takes no callback_url",
            params.callback_url,
        )
    return Submission(
        engine=params.engine,
        model=model,
        options=TranscribeOptions.model_validate(
            params.model_dump(include=set(TranscribeOptions.model_fields))
        ),
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
        raise InvalidField(
            "callback_url", f"callback_url refused: {refused.reason}", submission.callback_url
        ) from None


def check_servable(queue: Queue, settings: Settings, route: Route) -> None:
    """A 503 when workers are live but none serves `route`, unless QUEUE_UNSERVED_MODELS; with
    no live worker at all (all restarting, none started yet) the job is queued as ever."""
    if settings.queue_unserved_models:
        return
    connection = queue.connection
    if live_workers(connection, queue.name) == 0 or serving(connection, queue.name, [route])[route]:
        return
    routes = settings.catalogue().routes()
    served = [f"{r.id} ({n})" for r, n in serving(connection, queue.name, routes).items() if n]
    raise ServiceError(
        503,
        f"no live worker serves model {route.model!r} on engine {route.engine.value!r} "
        f"({route.id}); served now, with their workers: {', '.join(served) or 'none'}",
        {"Retry-After": str(settings.redis_retry_after_s)},
    )


async def submit(
    queue: Queue,
    settings: Settings,
    submission: Submission,
    staged: StagedUpload,
    fetch: Fetch,
    *,
    idempotency: Idempotency,
    caller: Caller | None = None,
) -> Accepted:
    """Claim the request's Idempotency-Key, take the caller's quotas, fetch the audio, check
    it and enqueue its job.

    A replay of the key answers the earlier job and fetches nothing. Raises ServiceError: 503
    (no live worker serves the model, see `check_servable`), 415 (not audio in an allowed
    container), 413 (too long), 409 (the key), 429 (a quota), 503 when fewer than
    REDIS_MIN_REPLICAS replicas acknowledge the job in time (it is withdrawn), and what `fetch`
    raises. The staged upload, the quotas taken and the key become the job's only once the job
    is enqueued (and held by the replicas asked for).
    """
    # A claim (and a place among the active jobs) outlives its request's fetch and probe.
    pending_ttl_s = int(idempotency.fetch_s + settings.ffprobe_timeout_s) + 30
    owner = caller.name if caller is not None else None
    keyed = KeyedSubmission(
        queue,
        settings,
        idempotency.key,
        idempotency.fingerprint,
        pending_ttl_s,
        owner,
        idempotency.keep_s,
    )
    job_id = staged.job_id
    async with keyed.claim(job_id) as replay:
        if replay is not None:
            return Accepted(replay.job_id, PublicStatus(replay.status), replayed=True)
        await run_in_threadpool(check_servable, queue, settings, submission.route)
        admission = (
            None
            if caller is None or caller.admin
            else Admission(Quotas(queue.connection, queue.name), caller.name, caller.limits,
                           pending_ttl_s)
        )  # fmt: skip
        made = False
        try:
            if admission is not None:
                await run_in_threadpool(admission.reserve, job_id)
            extension = await fetch()
            target = await run_in_threadpool(staged.probe_target)
            info = await probe_audio(target, settings.ffprobe_timeout_s)
            if info.duration_s is not None and info.duration_s > settings.max_audio_duration_s:
                raise ServiceError(
                    413,
                    f"audio too long: {info.duration_s:.0f} s; the limit is "
                    f"{settings.max_audio_duration_s:.0f} s",
                )
            if admission is not None:
                await run_in_threadpool(admission.charge, info.duration_s or 0.0)
            if extension is None:
                found = [n for n in info.format_name.split(",") if n in EXTENSION_OF_DEMUXER]
                extension = EXTENSION_OF_DEMUXER[found[0]] if found else "bin"
            audio_ref = await run_in_threadpool(staged.commit, extension)
            job = await run_in_threadpool(
                enqueue_transcription,
                queue,
                settings,
                job_id=job_id,
                request=submission.request(audio_ref, keep_audio=staged.keep_audio),
                duration_s=info.duration_s,
                callback_url=submission.callback_url,
                owner=owner,
            )
            if not await run_in_threadpool(
                replicas_hold, queue.connection, settings, Keys(queue.name).replication_marker
            ):
                await run_in_threadpool(withdraw, settings, job)
                raise ServiceError(
                    503,
                    f"the job store could not copy the job to {settings.redis_min_replicas} "
                    "replica(s) in time, so it was not accepted; retry shortly",
                    {"Retry-After": str(settings.redis_retry_after_s)},
                )
            staged.keep()
            made = True
        finally:
            if admission is not None and not made:
                with contextlib.suppress(RedisError):
                    await run_in_threadpool(admission.give_back)
    return Accepted(job_id, PublicStatus.QUEUED, replayed=False)


def withdraw(settings: Settings, job: Job) -> None:
    """Take back a job its submission did not accept (its client gets an error, never its id):
    canceled, and erased unless a worker took it that instant (it then ends canceled)."""
    log.warning("job %s withdrawn: too few Redis replicas acknowledged it", job.id)
    if cancel_job(settings, job) == "canceled":
        erase_job(settings, job)
