"""Typed settings for the API and the worker, read from the environment."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    Field,
    IPvAnyNetwork,
    PositiveFloat,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from common.catalog import CATALOGUE_NAME, CatalogEntry, Catalogue, EngineName, Route

MIB = 1024 * 1024


def _comma_separated(value: object) -> object:
    """`a, b,c` (the documented form) as a list; an empty value is an empty list."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


CommaList = Annotated[list[str], NoDecode, BeforeValidator(_comma_separated)]
"""A list read from one comma-separated environment variable (a JSON list works too)."""


def _routes(value: object) -> object:
    """`whisperx/large-v3, timestamped/tiny.en` as routes; an empty value is none."""
    items = _comma_separated(value)
    if isinstance(items, list):
        return [Route.parse(item) if isinstance(item, str) else item for item in items]
    return items


RouteList = Annotated[list[Route], NoDecode, BeforeValidator(_routes)]
"""Engine/model pairs read from one comma-separated environment variable."""


def _json_or_file(value: object) -> object:
    """MODELS as written: a JSON object, or the path of a file that holds one."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return {}
    if not text.startswith("{"):
        try:
            text = Path(text).expanduser().read_text()
        except OSError as error:
            raise ValueError(f"cannot read the MODELS file {text!r}: {error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"MODELS is not a JSON object: {error}") from None


DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"

LogLevel = Literal["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"]

ComputeType = Literal[
    "auto", "default", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16",
    "float16", "bfloat16", "float32",
]  # fmt: skip
"""CTranslate2's compute types, plus auto (float16 on cuda, int8 on cpu)."""


class Settings(BaseSettings):
    """Every knob of the service; each field is one environment variable of the same name."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    # --- Redis -------------------------------------------------------------------------------
    redis_url: SecretStr | None = Field(
        default=None, description="Full Redis URL; wins over REDIS_HOST/PORT/PASSWORD/DB when set."
    )
    redis_host: str = Field(default="localhost", description="Redis host name.")
    redis_port: int = Field(default=6379, description="Redis TCP port.")
    redis_password: SecretStr | None = Field(default=None, description="Redis password (AUTH).")
    redis_db: int = Field(default=0, description="Redis database number.")
    redis_timeout_s: float = Field(
        default=5.0, gt=0, description="Socket connect/read timeout for Redis calls, seconds."
    )
    queue_name: str = Field(
        default="transcribe",
        pattern=r"^[^@:]+$",
        description=(
            "RQ queue the API feeds; each engine/model gets its own queue under it "
            "(`<name>@<engine>:<model>`)."
        ),
    )

    # --- Redis Sentinel (high availability) --------------------------------------------------
    redis_sentinels: CommaList = Field(
        default_factory=list,
        description=(
            "Comma-separated Sentinel `host:port` addresses; when set they name the master (and "
            "follow its failovers), winning over REDIS_URL and REDIS_HOST/PORT."
        ),
    )
    redis_sentinel_master: str = Field(
        default="mymaster", description="Name the Sentinels monitor the master under."
    )
    redis_sentinel_password: SecretStr | None = Field(
        default=None,
        description="Password of the Sentinels themselves; the master's is REDIS_PASSWORD.",
    )
    redis_min_replicas: int = Field(
        default=0,
        ge=0,
        description=(
            "Replicas that must hold a new job before its submission answers 200 (Redis WAIT); "
            "0 waits for none, as for a single Redis. Set 1 with Sentinel and two replicas."
        ),
    )
    redis_min_replicas_timeout_s: float = Field(
        default=1.0,
        gt=0,
        description=(
            "How long a submission waits for REDIS_MIN_REPLICAS to acknowledge its job before "
            "withdrawing it with a 503, seconds."
        ),
    )

    # --- Uploads -----------------------------------------------------------------------------
    upload_dir: Path = Field(
        default=Path("/tmp/uploads"),
        description="Shared folder for uploaded audio; the same path in the API and workers.",
    )
    max_file_size: int = Field(
        default=500 * MIB, gt=0, description="Largest accepted upload, bytes."
    )
    max_audio_duration_s: float = Field(
        default=4 * 3600.0, gt=0, description="Longest accepted audio, seconds."
    )
    ffprobe_timeout_s: float = Field(
        default=30.0, gt=0, description="Time allowed to probe one upload, seconds."
    )
    upload_sweep_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="How often a worker removes uploads that no live job needs, seconds.",
    )
    upload_orphan_age_s: float = Field(
        default=3600.0,
        gt=0,
        description=(
            "An upload no job refers to, or an interrupted one, is removed once untouched this "
            "long, seconds; an ended job's upload goes at once (but see "
            "UPLOAD_KEEP_AFTER_END_S)."
        ),
    )
    upload_keep_after_end_s: float = Field(
        default=60.0,
        ge=0,
        description=(
            "With REDIS_MIN_REPLICAS above 0 (Redis behind Sentinel): an ended job's upload is "
            "kept this long, seconds, then the sweep removes it, so that a failover that rolls "
            "the end back (a deposed master still taking writes) reruns the job with its audio. "
            "0 removes it at the end, once the end is on the replicas."
        ),
    )

    # --- Object storage ----------------------------------------------------------------------
    storage_backend: Literal["local", "s3"] = Field(
        default="local",
        description=(
            "Where uploads wait for their job: `local` (UPLOAD_DIR, one folder every host "
            "mounts) or `s3` (S3_BUCKET, an S3-compatible object store)."
        ),
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description=(
            "URL of an S3-compatible store (e.g. `http://seaweedfs:8333`, path-style "
            "addressing); AWS S3 itself when unset."
        ),
    )
    s3_bucket: str | None = Field(
        default=None,
        description="Bucket for in-flight uploads (required with STORAGE_BACKEND=s3).",
    )
    s3_prefix: str = Field(
        default="uploads/",
        description=(
            "Key prefix of the uploads in S3_BUCKET; the service deletes and sweeps only there."
        ),
    )
    s3_access_key_id: str | None = Field(
        default=None,
        description=(
            "S3 access key; when unset, boto3's standard chain (AWS_ACCESS_KEY_ID, "
            "AWS_PROFILE, an instance role, ...)."
        ),
    )
    s3_secret_access_key: SecretStr | None = Field(
        default=None, description="S3 secret key, with S3_ACCESS_KEY_ID."
    )
    s3_input_buckets: CommaList = Field(
        default_factory=list,
        description=(
            "Comma-separated buckets whose objects POST /transcribe/url takes as "
            "`s3://bucket/key`, read with the server's credentials and never deleted."
        ),
    )
    s3_part_size_mib: int = Field(
        default=8,
        ge=5,
        le=512,
        description=(
            "Part size of the multipart upload each upload streams into, MiB; an upload "
            "holds at most three parts in memory."
        ),
    )

    # --- Jobs --------------------------------------------------------------------------------
    job_timeout_min_s: int = Field(
        default=300, gt=0, description="Floor of a job's timeout (model load included), seconds."
    )
    job_timeout_max_s: int = Field(
        default=6 * 3600, gt=0, description="Ceiling of a job's timeout, seconds."
    )
    job_timeout_per_audio_s: float = Field(
        default=1.0,
        gt=0,
        description="Processing seconds allowed per second of audio, added to the floor.",
    )
    job_timeout_engine_factors: dict[str, PositiveFloat] = Field(
        default_factory=lambda: {"whisperx": 1.0, "timestamped": 3.0},
        description=(
            "Per engine, a multiplier of JOB_TIMEOUT_PER_AUDIO_S for its expected speed (JSON); "
            "engines not named use 1."
        ),
    )
    result_ttl_s: int = Field(
        default=7 * 24 * 3600, gt=0, description="How long finished jobs and results are kept."
    )
    failure_ttl_s: int = Field(
        default=7 * 24 * 3600, gt=0, description="How long failed jobs are kept."
    )

    job_retries: int = Field(
        default=2,
        ge=0,
        description="Extra attempts after a worker dies mid-job or a transient error.",
    )
    shutdown_grace_s: float = Field(
        default=30.0,
        ge=0,
        description="On SIGTERM, time a worker gives its job before requeueing it.",
    )
    heartbeat_interval_s: int = Field(
        default=5, gt=0, description="How often a busy worker proves it is alive, seconds."
    )
    heartbeat_ttl_s: int = Field(
        default=30,
        gt=0,
        description="A job whose worker has not proved alive for this long is abandoned.",
    )
    maintenance_interval_s: float = Field(
        default=5.0, gt=0, description="How often workers look for abandoned jobs, seconds."
    )
    redis_retry_after_s: int = Field(
        default=5, gt=0, description="Retry-After sent with 503 answers while Redis is down."
    )
    redis_outage_wait_s: float = Field(
        default=20.0,
        ge=0,
        description=(
            "How long a worker that has finished a job waits for Redis to come back to record "
            "the result, seconds; keep it below HEARTBEAT_TTL_S."
        ),
    )

    # --- URL input, webhooks, cancellation -------------------------------------------------
    outbound_allowlist: Annotated[
        list[Annotated[IPvAnyNetwork | str, Field(union_mode="left_to_right")]],
        NoDecode,
        BeforeValidator(_comma_separated),
    ] = Field(
        default_factory=list,
        description=(
            "Comma-separated hosts or CIDRs that URL input and webhooks may reach although they "
            "are loopback, private, link-local or metadata addresses (refused otherwise)."
        ),
    )
    url_download_timeout_s: float = Field(
        default=60.0, gt=0, description="Time allowed to download one URL input, seconds."
    )
    url_max_redirects: int = Field(
        default=5, ge=0, description="Redirects a URL input may take; each hop is re-checked."
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="HMAC-SHA256 key that signs webhooks; callback_url is refused while unset.",
    )
    webhook_timeout_s: float = Field(
        default=10.0, gt=0, description="Time allowed for one webhook delivery attempt, seconds."
    )
    webhook_max_attempts: int = Field(
        default=5, ge=1, description="Delivery attempts per webhook before it is marked failed."
    )
    webhook_retry_base_s: int = Field(
        default=10,
        ge=0,
        description="Wait before a webhook's first retry, seconds; each later one waits 4x longer.",
    )
    cancel_wait_s: float = Field(
        default=5.0,
        ge=0,
        description="How long DELETE /jobs/{id} waits for a running job to stop before a 202.",
    )

    # --- Access ------------------------------------------------------------------------------
    require_api_key: bool = Field(
        default=False,
        description=(
            "Every route but /livez, /health, /docs and /openapi.json needs an API key "
            "(`python -m api.keys`); each key sees only its own jobs."
        ),
    )
    admin_api_key: SecretStr | None = Field(
        default=None, description="A key named admin that sees every job, with no `create`."
    )
    default_rate_per_min: int = Field(
        default=0, ge=0, description="Requests per minute per API key; 0 is unlimited."
    )
    default_max_active_jobs: int = Field(
        default=0, ge=0, description="Jobs queued or running at once per API key; 0 is unlimited."
    )
    default_audio_hours_per_day: float = Field(
        default=0.0,
        ge=0,
        description="Hours of audio accepted per API key per UTC day; 0 is unlimited.",
    )

    # --- Models and engines ------------------------------------------------------------------
    default_model: str = Field(
        default="tiny.en", description="Model used when a request names none."
    )
    default_engine: EngineName = Field(
        default=EngineName.WHISPERX,
        description=(
            "Engine of the OpenAI routes' `whisper-1` and of bare model names there (/v1/* "
            "only: POST /transcribe still requires `engine`)."
        ),
    )
    allowed_models: CommaList = Field(
        default_factory=list,
        description=(
            "Comma-separated model names clients may ask for; empty allows every known name and "
            "every MODELS entry."
        ),
    )
    models: Annotated[dict[str, CatalogEntry], NoDecode, BeforeValidator(_json_or_file)] = Field(
        default_factory=dict,
        description=(
            "The operator's model catalogue: a JSON object (or the path of a JSON file) mapping "
            "a name to its source, one for both engines or one per engine "
            '(`{"distil-large-v3": {"whisperx": "distil-whisper/distil-large-v3-ct2"}}`).'
        ),
    )
    preload_models: RouteList = Field(
        default_factory=list,
        description=(
            "Comma-separated engine/model pairs a worker loads at start, before it takes jobs "
            "(`whisperx/large-v3,timestamped/tiny.en`); kept loaded, never idle-unloaded."
        ),
    )
    worker_models: RouteList = Field(
        default_factory=list,
        description=(
            "Comma-separated engine/model pairs this worker serves (it takes only their jobs); "
            "empty serves every offered pair."
        ),
    )
    model_idle_ttl_s: float = Field(
        default=0.0,
        ge=0,
        description=(
            "A worker unloads a model no job has used for this long, seconds (preloaded ones "
            "stay); 0 keeps models until MAX_LOADED_MODELS evicts them."
        ),
    )
    queue_unserved_models: bool = Field(
        default=False,
        description=(
            "Queue jobs for a model no live worker serves; by default they are refused with a "
            "503 while other workers are live."
        ),
    )
    model_cache_dir: Path = Field(
        default=Path("~/.cache/transcribe-service"),
        description="Where named models are downloaded and converted models cached.",
    )
    device: str = Field(
        default="auto",
        pattern=DEVICE_PATTERN,
        description=(
            "Inference device: auto (cuda when available), cpu, cuda, or cuda:N to pin the "
            "worker to GPU N (of those CUDA_VISIBLE_DEVICES lists)."
        ),
    )
    compute_type: ComputeType = Field(
        default="auto",
        description="CTranslate2 compute type; auto is float16 on cuda, int8 on cpu.",
    )
    batch_size: int = Field(default=8, gt=0, description="whisperx batch size.")
    cpu_threads: int = Field(
        default=0, ge=0, description="Threads per worker for CPU inference; 0 uses all cores."
    )
    max_loaded_models: int = Field(
        default=2,
        gt=0,
        description="Models a worker keeps warm at once; the least recently used goes.",
    )
    whisperx_align: bool = Field(
        default=True,
        description=(
            "whisperx re-times words with wav2vec2 where its model and nltk's punkt_tab are in "
            "MODEL_CACHE_DIR (`python -m worker.models fetch-aligners`); false keeps Whisper's "
            "cross-attention timings."
        ),
    )

    # --- Speakers (diarization) ---------------------------------------------------------------
    diarization_backend: Literal["auto", "pyannote", "resemblyzer"] = Field(
        default="auto",
        description=(
            "Who labels speakers for `diarize=true`: `pyannote` (pyannote.audio's pipeline, "
            "needs HF_TOKEN or the pipeline in MODEL_CACHE_DIR), `resemblyzer` (bundled, "
            "offline) or `auto` (pyannote when it can load, else resemblyzer)."
        ),
    )
    pyannote_pipeline: str = Field(
        default="pyannote/speaker-diarization-community-1",
        description=(
            "Hugging Face id (looked for in MODEL_CACHE_DIR first) or local folder of the "
            "pyannote diarization pipeline."
        ),
    )
    hf_token: SecretStr | None = Field(
        default=None,
        description=(
            "Hugging Face token that may download PYANNOTE_PIPELINE (a gated model) into "
            "MODEL_CACHE_DIR; without it pyannote loads only from there."
        ),
    )

    # --- OpenAI-compatible routes -------------------------------------------------------------
    openai_dedup_window_s: int = Field(
        default=600,
        ge=0,
        description=(
            "A /v1/audio request repeated with the same file and fields within this many "
            "seconds (by the same API key) is answered from the first one's job; 0 turns it off."
        ),
    )
    openai_cancel_on_disconnect: bool = Field(
        default=False,
        description=(
            "Cancel a /v1/audio request's job when its client disconnects before the answer; "
            "by default the job finishes and stays under /jobs."
        ),
    )

    # --- Metrics -----------------------------------------------------------------------------
    metrics_enabled: bool = Field(
        default=True,
        description="Serve Prometheus metrics at GET /metrics and count the API's requests.",
    )
    metrics_require_admin_key: bool = Field(
        default=False,
        description="GET /metrics needs an admin API key (ADMIN_API_KEY or an --admin key).",
    )
    worker_metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of a worker's own Prometheus endpoint (all addresses); 0 turns it off.",
    )

    # --- Logging -----------------------------------------------------------------------------
    log_level: Annotated[LogLevel, BeforeValidator(lambda value: str(value).upper())] = Field(
        default="INFO", description="Python logging level."
    )

    @field_validator("upload_dir", "model_cache_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("redis_sentinels")
    @classmethod
    def _host_ports(cls, value: list[str]) -> list[str]:
        for address in value:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{address!r} is not host:port")
        return value

    @field_validator("s3_prefix")
    @classmethod
    def _key_prefix(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError("S3_PREFIX must be relative, without `..`")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.storage_backend == "s3" and not self.s3_bucket:
            raise ValueError("STORAGE_BACKEND=s3 needs S3_BUCKET")
        if self.redis_min_replicas and self.redis_min_replicas_timeout_s >= self.redis_timeout_s:
            # WAIT blocks the connection that long: the socket must outlast it.
            raise ValueError("REDIS_MIN_REPLICAS_TIMEOUT_S must be below REDIS_TIMEOUT_S")
        return self

    @field_validator("models")
    @classmethod
    def _plain_names(cls, value: dict[str, CatalogEntry]) -> dict[str, CatalogEntry]:
        for name in value:
            if not CATALOGUE_NAME.match(name):
                raise ValueError(
                    f"MODELS name {name!r}: use letters, digits, '.', '_' and '-' (a name, not "
                    "a path)"
                )
        return value

    def catalogue(self) -> Catalogue:
        """The models this server offers: MODELS and the known names, narrowed by ALLOWED_MODELS."""
        return Catalogue(self.models, self.allowed_models)


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
