"""The queue contract: the job request, its meta, the task name, the status names, the queues'
names and the Redis keys.

The API writes these and the worker reads them back; no other module knows a job's wire shape.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.job import JobStatus as RQStatus

from common.catalog import EngineName, Language, Route

TASK = "worker.tasks.transcribe"
"""The worker's job function, enqueued by name so the API never imports worker code."""

INCOMING_PREFIX = ".incoming-"
"""Name prefix of a file in UPLOAD_DIR that the API is still receiving or checking."""

UPLOAD_NAME = re.compile(
    r"^(?P<job_id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.\w+$"
)
"""The name of an accepted upload in UPLOAD_DIR: `<job id>.<extension>`."""


class Task(StrEnum):
    """What to produce: text in the spoken language, or an English translation."""

    TRANSCRIBE = "transcribe"
    TRANSLATE = "translate"


class TranscribeOptions(BaseModel):
    """Per-job decoding options, each honoured where the engine's library supports it.

    The submission form and JSON body reuse these fields as they stand.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    language: Language | None = Field(
        default=None, description="Spoken language; detected when omitted."
    )
    task: Task = Field(
        default=Task.TRANSCRIBE,
        description="translate gives English text; it needs a multilingual (not .en) model.",
    )
    initial_prompt: str | None = Field(
        default=None,
        max_length=1000,
        description="Text the model sees as preceding speech: names, spelling, style.",
    )
    hotwords: str | None = Field(
        default=None,
        max_length=500,
        description="Words to favour while decoding (whisperx only; 422 with timestamped).",
    )
    vad: bool = Field(
        default=True,
        description="Skip non-speech with voice activity detection; off decodes every 30 s window.",
    )
    word_timestamps: bool = Field(default=True, description="Time each word, not only segments.")
    beam_size: int | None = Field(
        default=None, ge=1, le=10, description="Beam search width; the engine's default if unset."
    )
    temperature: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description=(
            "Sampling temperature (timestamped; whisperx decodes deterministically and accepts "
            "only 0)."
        ),
    )
    diarize: bool = Field(
        default=False, description="Label each segment and word with its speaker (SPEAKER_00, ...)."
    )
    num_speakers: int | None = Field(
        default=None, ge=1, le=20, description="Exact number of speakers; estimated when unset."
    )
    min_speakers: int | None = Field(
        default=None, ge=1, le=20, description="Fewest speakers to consider when estimating."
    )
    max_speakers: int | None = Field(
        default=None, ge=1, le=20, description="Most speakers to consider when estimating."
    )

    @model_validator(mode="after")
    def _speaker_counts(self) -> TranscribeOptions:
        """Speaker counts only with diarize, and either an exact count or a consistent range."""
        counts = {
            "num_speakers": self.num_speakers,
            "min_speakers": self.min_speakers,
            "max_speakers": self.max_speakers,
        }
        given = [name for name, value in counts.items() if value is not None]
        if given and not self.diarize:
            raise ValueError(f"{given[0]} needs diarize=true")
        if self.num_speakers is not None and (
            self.min_speakers is not None or self.max_speakers is not None
        ):
            raise ValueError("give num_speakers or min_speakers/max_speakers, not both")
        if (
            self.min_speakers is not None
            and self.max_speakers is not None
            and self.min_speakers > self.max_speakers
        ):
            raise ValueError("min_speakers must not exceed max_speakers")
        return self

    @model_serializer(mode="wrap")
    def _leave_off_diarize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A job that is not diarized carries no `diarize` field, as before the option existed,
        so its request stays minimal and readable by workers of the previous release."""
        data: dict[str, Any] = handler(self)
        if not self.diarize:
            data.pop("diarize", None)
        return data


class JobRequest(BaseModel):
    """What a job asks the worker to do; its fields are the task's keyword arguments."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    audio_path: str = Field(
        description=(
            "The upload: a file inside UPLOAD_DIR, or an object `s3://bucket/key`; never the "
            "audio itself."
        )
    )
    engine: EngineName
    model: str
    options: TranscribeOptions = Field(default_factory=TranscribeOptions)
    keep_audio: bool | None = Field(
        default=None,
        description=(
            "True for the client's own object (s3:// input): read, never deleted. Left out "
            "(None) for an upload, which the job's end deletes."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _language_into_options(cls, data: Any) -> Any:
        """Jobs queued before this contract carried `language` beside `options`."""
        if isinstance(data, dict) and "language" in data:
            data = dict(data)
            language = data.pop("language")
            options = dict(data.get("options") or {})
            options.setdefault("language", language)
            data["options"] = options
        return data


ROUTE_SEPARATOR = "@"
"""Between QUEUE_NAME and the engine:model in the name of a route's queue."""


def route_queue_name(queue_name: str, route: Route) -> str:
    """The RQ queue that holds the jobs of one engine and model: `<QUEUE_NAME>@<engine>:<model>`.

    Jobs wait on their route's queue, and a worker listens to the queues of the routes it
    serves; every key beside rq's own stays under QUEUE_NAME (see Keys).
    """
    return f"{home_queue_name(queue_name)}{ROUTE_SEPARATOR}{route.engine.value}:{route.model}"


def home_queue_name(queue_name: str) -> str:
    """QUEUE_NAME of a route's queue name (a QUEUE_NAME is its own)."""
    return queue_name.partition(ROUTE_SEPARATOR)[0]


def route_of_queue(queue_name: str) -> Route | None:
    """The route whose jobs a queue holds; None for QUEUE_NAME's own queue (or a foreign one)."""
    _, separator, route = queue_name.partition(ROUTE_SEPARATOR)
    engine, colon, model = route.partition(":")
    if not separator or not colon or engine not in {member.value for member in EngineName}:
        return None
    return Route(EngineName(engine), model)


def request_of(job: Job) -> JobRequest | None:
    """The request a job carries, or None when its arguments are not one (a foreign job)."""
    kwargs = job.kwargs if isinstance(job.kwargs, dict) else {}
    try:
        return JobRequest.model_validate(kwargs)
    except ValueError:
        return None


class Progress(BaseModel):
    """How far a job has come."""

    stage: str = Field(
        description="queued, loading_model, decoding, transcribing, aligning, diarizing, done"
    )
    percent: float | None = Field(default=None, ge=0, le=100)


class StageProgress(Progress):
    """Progress as stored: also when the stage began, for the API's remaining-time estimate."""

    stage_started_at: float | None = Field(default=None, description="Unix seconds.")


class WebhookState(BaseModel):
    """How the delivery of a job's webhook has gone so far."""

    state: Literal["pending", "retrying", "delivered", "failed"] = Field(
        default="pending",
        description=(
            "pending until the job ends and the first attempt is made; retrying after a failed "
            "attempt with attempts left; delivered (2xx); failed when no attempt is left or the "
            "receiver refused for good"
        ),
    )
    attempts: int = Field(default=0, ge=0)
    last_attempt_at: datetime | None = None
    last_status_code: int | None = Field(
        default=None, description="HTTP status of the last attempt, if one came back."
    )
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None


class JobMeta(BaseModel):
    """What the API and the worker write beside a job, in its rq meta."""

    model_config = ConfigDict(extra="ignore")

    progress: StageProgress | None = None
    callback_url: str | None = None
    webhook: WebhookState | None = None
    error: str | None = Field(default=None, description="Why the job failed, for people.")
    detected_language: str | None = None
    owner: str | None = Field(default=None, description="Name of the API key that submitted it.")


def meta_of(job: Job) -> JobMeta:
    """The job's meta as last loaded (call `job.get_meta()` first for a fresh copy)."""
    return JobMeta.model_validate(job.meta if isinstance(job.meta, dict) else {})


def store_meta(job: Job, meta: JobMeta, *, save: bool = True) -> None:
    """Replace the job's meta with `meta`; saved to Redis unless `save` is False."""
    job.meta.clear()
    job.meta.update(meta.model_dump(mode="json", exclude_none=True, round_trip=True))
    if save:
        job.save_meta()


class PublicStatus(StrEnum):
    """A job's state as clients see it: rq's states, with a stopped job shown as canceled."""

    QUEUED = "queued"
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELED = "canceled"
    DEFERRED = "deferred"
    SCHEDULED = "scheduled"


TERMINAL: frozenset[PublicStatus] = frozenset(
    {PublicStatus.FINISHED, PublicStatus.FAILED, PublicStatus.CANCELED}
)
"""States a job never leaves by itself."""

LIVE: frozenset[PublicStatus] = frozenset(PublicStatus) - TERMINAL
"""States in which a job may still run, and so may still read its upload."""

CANCELABLE: frozenset[PublicStatus] = LIVE
"""States a cancel acts on (a canceled job's cancel is a no-op, an ended one's a conflict)."""

_FROM_RQ: dict[str, PublicStatus] = {
    RQStatus.STOPPED.value: PublicStatus.CANCELED,  # a running job is only stopped by a cancel
}


def public_status_of(rq_status: str) -> PublicStatus | None:
    """The public name of an rq status string; None for a state this contract does not know."""
    if rq_status in _FROM_RQ:
        return _FROM_RQ[rq_status]
    try:
        return PublicStatus(rq_status)
    except ValueError:
        return None


def public_status(job: Job) -> PublicStatus:
    """The job's state as last loaded, as the API names it."""
    status = job.get_status(refresh=False)
    name = str(status.value if isinstance(status, RQStatus) else status)
    return public_status_of(name) or PublicStatus.QUEUED


def load_job(queue: Queue, job_id: str) -> Job | None:
    """The saved job `job_id` of `queue`, or None; a miss changes nothing in Redis.

    Never use rq's `Queue.fetch_job` for a job that may not be saved yet or may be gone: on a
    miss it removes the id from the queue's list, so a lookup racing an enqueue (the hash and
    the list entry are written in one transaction, after the lookup's read) loses that job.
    """
    try:
        job = Job.fetch(job_id, connection=queue.connection, serializer=queue.serializer)
    except NoSuchJobError:
        return None
    same_service = home_queue_name(job.origin) == home_queue_name(queue.name)
    return job if same_service else None


class Keys:
    """Every Redis key this service adds beside rq's own, under QUEUE_NAME's `rq:queue:<name>`.

    Built from a route's queue name, the keys are the same, except the queue's own list and the
    waiting lists of fair turns (`rotation`, `pending`), which are the route's.
    """

    def __init__(self, queue_name: str) -> None:
        namespace = Queue.redis_queue_namespace_prefix
        self.prefix = prefix = f"{namespace}{home_queue_name(queue_name)}"
        self.queue = queue = f"{namespace}{queue_name}"
        """The RQ queue's own list of job ids (rq names it so)."""
        self.index = f"{prefix}:index"
        """Sorted set of job ids by creation time (GET /jobs)."""
        self.webhooks_due = f"{prefix}:webhooks"
        """Sorted set of ended job ids whose webhook is due, scored by due time."""
        self.maintenance_lock = f"{prefix}:maintenance-lock"
        """Held by the one worker that runs a maintenance pass."""
        self.replication_marker = f"{prefix}:replication-marker"
        """Written just before a WAIT for replicas (see `common.redis_conn.replicas_hold`)."""
        self.api_keys = f"{prefix}:api-keys"
        """Hash of API keys: SHA-256 of the key → its record (name, admin flag)."""
        self.api_key_names = f"{prefix}:api-key-names"
        """Hash of API key names → the SHA-256 they are stored under."""
        self.api_key_last_used = f"{prefix}:api-key-last-used"
        """Hash of API key names → when each was last used (ISO time)."""
        self.rotation = f"{queue}:rotation"
        """List of API key names with jobs waiting their turn for this queue, in turn order."""
        self.pending_prefix = f"{queue}:pending:"
        """Prefix of each key's list of jobs waiting their turn (see `pending`)."""

    def webhook_scheduled(self, job_id: str) -> str:
        """Marker that the job's webhook was scheduled (once per job)."""
        return f"{self.webhooks_due}:scheduled:{job_id}"

    def ended(self, job_id: str) -> str:
        """List that holds the job's end signal for long-polls."""
        return f"{self.prefix}:ended:{job_id}"

    def cancel(self, job_id: str) -> str:
        """Set when the job must not run, or must stop."""
        return f"{self.prefix}:cancel:{job_id}"

    def events(self, job_id: str) -> str:
        """Stream of the job's status, progress and segment events (see `common.events`)."""
        return f"{self.prefix}:events:{job_id}"

    def owner_index(self, owner: str) -> str:
        """Sorted set of one API key's job ids by creation time."""
        return f"{self.index}:owner:{owner}"

    def pending(self, owner: str) -> str:
        """List of one API key's jobs waiting their turn for the RQ queue, oldest first."""
        return f"{self.pending_prefix}{owner}"

    def active(self, owner: str) -> str:
        """Sorted set of one API key's queued or running job ids, by when each was admitted."""
        return f"{self.prefix}:active:{owner}"

    def audio_used(self, owner: str, day: str) -> str:
        """Seconds of audio one API key had accepted on one UTC day (YYYY-MM-DD)."""
        return f"{self.prefix}:audio:{owner}:{day}"

    def idempotency(self, key_sha256: str) -> str:
        """A client's Idempotency-Key (as its SHA-256) → the job it made."""
        return f"{self.prefix}:idempotency:{key_sha256}"
