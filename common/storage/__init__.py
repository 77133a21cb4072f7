"""Where uploads wait for their job: the storage port, its backends and the resolver.

The API stages each upload (streamed in, probed, then committed under its job's name), the
queue carries only the reference the commit returns, a worker makes a local copy to decode and
the job's end deletes it (`common.job_end`); the sweep lists what is left. Two backends
implement the port: `local` (UPLOAD_DIR, a folder every host mounts; the default) and `s3`
(S3_BUCKET in an S3-compatible store). They are imported lazily, so `import api` never loads
boto3 for a server that stores uploads in a folder.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol

from config import Settings

S3_SCHEME = "s3://"

BACKENDS: dict[str, str] = {
    "local": "common.storage.local:LocalStore",
    "s3": "common.storage.s3:S3Store",
}
"""STORAGE_BACKEND → the `module:Class` that implements it, imported on first use."""


class AudioMissing(Exception):
    """The stored audio is gone: deleted after an earlier attempt, swept, or by its owner."""


class AudioTooLarge(Exception):
    """The stored audio is larger than MAX_FILE_SIZE (an input object replaced since its job was
    accepted)."""


class AudioUnreadable(Exception):
    """The store refuses the service's credentials for this object (access denied)."""


class StorageUnavailable(Exception):
    """The store could not be reached or failed the service's request; retrying may help."""


class UploadSink(Protocol):
    """Takes an upload's bytes in order. Blocking: the API calls it from a worker thread, one
    call at a time."""

    def write(self, data: bytes) -> None:
        """Store the next bytes (buffered as the backend needs)."""

    def finish(self) -> None:
        """Every byte written is stored now (fsynced, or the object complete)."""

    def close(self) -> None:
        """Release what the sink holds without finishing (a no-op once finished); what was
        stored is the staged upload's to discard."""


ProbeTarget = Path | str
"""What the API's probe reads: a local file, or an http(s) URL of an object (presigned)."""


class StagedUpload(Protocol):
    """Audio on its way to becoming a job's: received (or found) and checked, then committed,
    or discarded by its owner (`api.intake.staging.staged_upload`) unless kept."""

    job_id: str
    """The id the job will have (an object-store upload is named by it from the start)."""
    keep_audio: bool
    """True for the client's own object (s3:// input): the job never deletes it."""
    kept: bool

    def open_sink(self) -> UploadSink:
        """Create the upload (it must not exist yet) and return where its bytes go."""

    def probe_target(self) -> ProbeTarget:
        """Where the probe reads the received audio (blocking: may sign a URL)."""

    def commit(self, extension: str) -> str:
        """Give the audio its job's name; returns the reference the job carries (blocking)."""

    def keep(self) -> None:
        """The audio is a job's now: its owner no longer discards it."""

    def discard(self) -> None:
        """Delete whatever was stored, if anything (blocking; safe to call twice)."""


class InputAudio(StagedUpload, Protocol):
    """A client's object taken where it is (s3:// input)."""

    def size(self) -> int:
        """Its size in bytes; raises AudioMissing, AudioUnreadable, StorageUnavailable."""


@dataclass(frozen=True)
class Listed:
    """Something the sweep finds in the store."""

    location: str
    """The file's path or the object's key, for removal and logs."""
    job_id: str | None
    """The job it is named after; None for an upload still being received (or cut off)."""
    modified_at: float
    """Unix time of its last change."""
    upload_id: str | None = None
    """An unfinished multipart upload's id (object storage only)."""


class UploadStore(Protocol):
    """One backend: stages uploads for the API, serves them to workers, deletes and lists them."""

    def stage(self) -> StagedUpload:
        """A new staged upload under a fresh job id (nothing is stored until `open_sink`)."""

    def holds(self, ref: str) -> bool:
        """Whether `ref` names one of this store's uploads (the only ones it deletes)."""

    def exists(self, ref: str) -> bool:
        """Whether the audio `ref` names is there."""

    def local_copy(self, ref: str, max_bytes: int) -> AbstractContextManager[Path]:
        """A local file with the audio for the block (the file itself, or a scratch copy deleted
        on leaving). Raises AudioMissing, AudioTooLarge (past `max_bytes`), StorageUnavailable."""

    def delete(self, ref: str) -> None:
        """Delete the upload `ref` names; a missing one is no error."""

    def listing(self) -> Iterator[Listed]:
        """Every upload and unfinished upload in the store, for the sweep."""

    def remove(self, listed: Listed) -> None:
        """Delete what `listing` found (a missing one is no error)."""


class ObjectStore(UploadStore, Protocol):
    """The object-storage backend, which also reads clients' objects in other buckets."""

    def input_object(self, bucket: str, key: str) -> InputAudio:
        """The client's object at s3://bucket/key (the caller has checked it may be read)."""


@dataclass(frozen=True)
class StorageConfig:
    """The settings the stores are built from (hashable: one set of clients per configuration)."""

    backend: Literal["local", "s3"]
    upload_dir: Path
    s3_endpoint_url: str | None
    s3_bucket: str | None
    s3_prefix: str
    s3_access_key_id: str | None
    s3_secret_access_key: str | None
    s3_part_size_bytes: int
    s3_presign_ttl_s: int

    @classmethod
    def of(cls, settings: Settings) -> StorageConfig:
        secret = settings.s3_secret_access_key
        return cls(
            backend=settings.storage_backend,
            upload_dir=settings.upload_dir,
            s3_endpoint_url=settings.s3_endpoint_url,
            s3_bucket=settings.s3_bucket,
            s3_prefix=settings.s3_prefix,
            s3_access_key_id=settings.s3_access_key_id,
            s3_secret_access_key=secret.get_secret_value() if secret else None,
            s3_part_size_bytes=settings.s3_part_size_mib * 1024 * 1024,
            # A probe reads its URL within FFPROBE_TIMEOUT_S of signing.
            s3_presign_ttl_s=int(settings.ffprobe_timeout_s) + 60,
        )


def _load(backend: str, config: StorageConfig) -> Any:
    module_name, _, class_name = BACKENDS[backend].partition(":")
    return getattr(importlib.import_module(module_name), class_name)(config)


@dataclass(frozen=True)
class Storage:
    """The stores of one configuration: uploads go to `uploads`; a reference is read and
    deleted by the store its form names (`s3://…` by the object store, a path by the folder)."""

    uploads: UploadStore
    local: UploadStore
    config: StorageConfig

    def for_ref(self, ref: str) -> UploadStore:
        """The store that reads the audio `ref` names."""
        if ref.startswith(S3_SCHEME):
            return self.objects
        return self.local

    @property
    def objects(self) -> ObjectStore:
        """The object store (S3_ENDPOINT_URL with the server's credentials), built on first use
        where uploads stay in a folder."""
        return _objects(self.config)

    def delete(self, ref: str) -> bool:
        """Delete the upload `ref` names if it is one of the service's own; returns whether it
        was (a reference outside UPLOAD_DIR, or outside S3_BUCKET/S3_PREFIX, is left alone)."""
        store = self.for_ref(ref)
        if not store.holds(ref):
            return False
        store.delete(ref)
        return True


@lru_cache(maxsize=16)
def _objects(config: StorageConfig) -> ObjectStore:
    store: ObjectStore = _load("s3", config)
    return store


@lru_cache(maxsize=16)
def _storage(config: StorageConfig) -> Storage:
    local: UploadStore = _load("local", config)
    uploads = local if config.backend == "local" else _objects(config)
    return Storage(uploads=uploads, local=local, config=config)


def storage_of(settings: Settings) -> Storage:
    """The stores for `settings`, built once per process and configuration (an S3 client keeps
    its connection pool, and is safe to share between threads)."""
    return _storage(StorageConfig.of(settings))


def parse_s3_ref(ref: str) -> tuple[str, str]:
    """`s3://bucket/key` as (bucket, key); ValueError for anything else."""
    if not ref.startswith(S3_SCHEME):
        raise ValueError(f"not an s3:// reference: {ref!r}")
    bucket, slash, key = ref[len(S3_SCHEME) :].partition("/")
    if not bucket or not slash or not key:
        raise ValueError(f"an s3:// reference names a bucket and a key: {ref!r}")
    return bucket, key


def s3_ref(bucket: str, key: str) -> str:
    """The reference a job carries for an object."""
    return f"{S3_SCHEME}{bucket}/{key}"
