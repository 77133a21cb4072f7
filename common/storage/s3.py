"""The object-storage backend: uploads are objects `<S3_PREFIX><job id>` in S3_BUCKET.

An upload streams into a multipart upload part by part (S3_PART_SIZE_MIB; at most one part
filling and one in flight, so memory stays within about three parts whatever the file's size),
small ones into a single PUT. boto3's managed transfers are not used for it: their defaults
(10 threads of 8 MiB parts, plus a read-ahead queue) would hold far more, and they want a file
to read, not a stream that arrives. The probe reads the object through a presigned GET, so no
second copy lands on the API's disk; a worker copies the object to scratch space to decode it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from common.storage import (
    AudioMissing,
    AudioTooLarge,
    AudioUnreadable,
    Listed,
    StorageConfig,
    StorageUnavailable,
    parse_s3_ref,
    s3_ref,
)

log = logging.getLogger(__name__)

UPLOAD_KEY = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
"""An upload's key after S3_PREFIX: its job id."""

DOWNLOAD_CHUNK_BYTES = 1024 * 1024
MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchUpload"})
DENIED_CODES = frozenset({"403", "AccessDenied", "Forbidden"})

T = TypeVar("T")


def make_client(config: StorageConfig) -> Any:
    """A boto3 S3 client: SigV4, path-style addressing for an S3-compatible endpoint, bounded
    timeouts and retries, and checksums only where a request needs one (what every S3-compatible
    store accepts)."""
    session = boto3.session.Session(
        aws_access_key_id=config.s3_access_key_id,
        aws_secret_access_key=config.s3_secret_access_key,
    )
    return session.client(
        "s3",
        endpoint_url=config.s3_endpoint_url,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"} if config.s3_endpoint_url else {},
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=5,
            read_timeout=60,
            max_pool_connections=32,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def error_code(error: ClientError) -> str:
    """The S3 error code of a failed call (`NoSuchKey`, `404`, `AccessDenied`, ...)."""
    return str(error.response.get("Error", {}).get("Code", ""))


def call(what: str, action: Callable[[], T]) -> T:
    """Run one S3 call; a failure that is not about the object itself is StorageUnavailable."""
    try:
        return action()
    except ClientError as error:
        if error_code(error) in MISSING_CODES:
            raise AudioMissing(f"{what}: no such object") from error
        raise StorageUnavailable(f"{what}: {error_code(error) or error}") from error
    except BotoCoreError as error:
        raise StorageUnavailable(f"{what}: {error}") from error


class StagedObject:
    """An upload streaming into the object `<prefix><job id>`; it is also its own sink.

    Parts go up from a thread of their own while the next part fills, one at a time. `discard`
    (from any thread) waits for a part in flight, then aborts the multipart upload or deletes
    the finished object.
    """

    keep_audio = False

    def __init__(self, store: S3Store, job_id: str | None = None) -> None:
        self.job_id = job_id or str(uuid.uuid4())
        self.kept = False
        self._store = store
        self.key = f"{store.prefix}{self.job_id}"
        self._lock = threading.Lock()
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._upload_id: str | None = None
        self._in_flight: Future[None] | None = None
        self._sender: ThreadPoolExecutor | None = None
        self._opened = False
        self._closed = False
        self._complete = False

    # --- the sink ------------------------------------------------------------------------------

    def open_sink(self) -> StagedObject:
        if self._opened:
            raise RuntimeError(f"upload {self.key} was opened already")
        self._opened = True
        return self

    def write(self, data: bytes) -> None:
        with self._lock:
            self._check_writable()
            self._buffer += data
            part_size = self._store.part_size
            while len(self._buffer) >= part_size:
                self._wait_for_part()  # before copying the next part: one part in flight
                part = bytes(self._buffer[:part_size])
                del self._buffer[:part_size]
                self._send(part)

    def finish(self) -> None:
        with self._lock:
            self._check_writable()
            client, bucket = self._store.client, self._store.bucket
            if self._upload_id is None:
                body = bytes(self._buffer)
                call(
                    "store the upload",
                    lambda: client.put_object(Bucket=bucket, Key=self.key, Body=body),
                )
            else:
                self._wait_for_part()
                if self._buffer:
                    self._upload_part(self._number_next_part(), bytes(self._buffer))
                upload_id = self._upload_id
                parts = list(self._parts)
                call(
                    "complete the upload",
                    lambda: client.complete_multipart_upload(
                        Bucket=bucket,
                        Key=self.key,
                        UploadId=upload_id,
                        MultipartUpload={"Parts": parts},
                    ),
                )
            self._complete = True
            self._release()

    def close(self) -> None:
        """Refuse further writes; `discard` waits for a part in flight and removes what was
        stored (this may run on the event loop, so it blocks on nothing)."""
        self._closed = True

    def _check_writable(self) -> None:
        if self._closed or self._complete:
            raise RuntimeError(f"upload {self.key} is closed")

    def _send(self, part: bytes) -> None:
        client, bucket = self._store.client, self._store.bucket
        if self._upload_id is None:
            created = call(
                "start the upload",
                lambda: client.create_multipart_upload(Bucket=bucket, Key=self.key),
            )
            self._upload_id = str(created["UploadId"])
            self._sender = ThreadPoolExecutor(1, thread_name_prefix="s3-part")
        assert self._sender is not None
        self._in_flight = self._sender.submit(self._upload_part, self._number_next_part(), part)

    def _number_next_part(self) -> int:
        """Number the next part (in order, before it is sent); its ETag comes once stored."""
        number = len(self._parts) + 1
        self._parts.append({"PartNumber": number})
        return number

    def _upload_part(self, number: int, part: bytes) -> None:
        client, bucket, upload_id = self._store.client, self._store.bucket, self._upload_id
        answer = call(
            f"store part {number} of the upload",
            lambda: client.upload_part(
                Bucket=bucket, Key=self.key, UploadId=upload_id, PartNumber=number, Body=part
            ),
        )
        self._parts[number - 1]["ETag"] = answer["ETag"]

    def _wait_for_part(self) -> None:
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.result()

    def _release(self) -> None:
        self._buffer = bytearray()
        if self._sender is not None:
            self._sender.shutdown(wait=True)
            self._sender = None

    # --- the staged upload ---------------------------------------------------------------------

    def probe_target(self) -> str:
        return self._store.presigned_get(self._store.bucket, self.key)

    def commit(self, extension: str) -> str:  # noqa: ARG002 - the key is the job id already
        return s3_ref(self._store.bucket, self.key)

    def keep(self) -> None:
        self.kept = True

    def discard(self) -> None:
        with self._lock:
            self._closed = True
            with contextlib.suppress(Exception):  # its error was raised (or is moot) already
                self._wait_for_part()
            self._release()
            client, bucket = self._store.client, self._store.bucket
            try:
                if self._complete:
                    call(
                        "delete the upload",
                        lambda: client.delete_object(Bucket=bucket, Key=self.key),
                    )
                elif self._upload_id is not None:
                    upload_id = self._upload_id
                    call(
                        "abort the upload",
                        lambda: client.abort_multipart_upload(
                            Bucket=bucket, Key=self.key, UploadId=upload_id
                        ),
                    )
            except (AudioMissing, StorageUnavailable) as error:
                log.warning("upload %s left for the sweep: %s", self.key, error)
            self._complete = False
            self._upload_id = None


class InputObject:
    """A client's object named by an `s3://bucket/key` URL: probed and read where it is, never
    written or deleted."""

    keep_audio = True

    def __init__(self, store: S3Store, bucket: str, key: str) -> None:
        self.job_id = str(uuid.uuid4())
        self.kept = False
        self.bucket = bucket
        self.key = key
        self._store = store

    def size(self) -> int:
        """The object's size in bytes; raises AudioMissing, AudioUnreadable (the server's
        credentials may not read it), StorageUnavailable."""
        try:
            head = self._store.client.head_object(Bucket=self.bucket, Key=self.key)
        except ClientError as error:
            code = error_code(error)
            if code in MISSING_CODES or code == "NoSuchBucket":
                raise AudioMissing(f"s3://{self.bucket}/{self.key}: no such object") from None
            if code in DENIED_CODES:
                raise AudioUnreadable(f"s3://{self.bucket}/{self.key}: access denied") from None
            raise StorageUnavailable(f"read s3://{self.bucket}/{self.key}: {code}") from error
        except BotoCoreError as error:
            raise StorageUnavailable(f"read s3://{self.bucket}/{self.key}: {error}") from error
        return int(head["ContentLength"])

    def open_sink(self) -> StagedObject:
        raise RuntimeError("an input object is read where it is, never written")

    def probe_target(self) -> str:
        return self._store.presigned_get(self.bucket, self.key)

    def commit(self, extension: str) -> str:  # noqa: ARG002 - it keeps its own name
        return s3_ref(self.bucket, self.key)

    def keep(self) -> None:
        self.kept = True

    def discard(self) -> None:
        """Nothing to do: the object is its owner's."""


class S3Store:
    """S3_BUCKET under S3_PREFIX as the uploads' store; a reference is `s3://bucket/key`.

    It also reads (never deletes) objects of other buckets: the s3:// input of POST
    /transcribe/url, for buckets in S3_INPUT_BUCKETS.
    """

    def __init__(self, config: StorageConfig) -> None:
        self._bucket = config.s3_bucket
        self.prefix = config.s3_prefix
        self.part_size = config.s3_part_size_bytes
        self._presign_ttl_s = config.s3_presign_ttl_s
        self.client = make_client(config)

    @property
    def bucket(self) -> str:
        if self._bucket is None:
            raise StorageUnavailable("no S3_BUCKET is configured for uploads")
        return self._bucket

    def stage(self) -> StagedObject:
        return StagedObject(self)

    def input_object(self, bucket: str, key: str) -> InputObject:
        """The client's object at s3://bucket/key (the caller has checked it may be read)."""
        return InputObject(self, bucket, key)

    def presigned_get(self, bucket: str, key: str) -> str:
        """A URL that reads the object for a little longer than a probe may take."""
        url: str = call(
            "sign a read of the upload",
            lambda: self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": bucket, "Key": key},
                ExpiresIn=self._presign_ttl_s,
            ),
        )
        return url

    def holds(self, ref: str) -> bool:
        try:
            bucket, key = parse_s3_ref(ref)
        except ValueError:
            return False
        return (
            bucket == self._bucket
            and key.startswith(self.prefix)
            and UPLOAD_KEY.match(key[len(self.prefix) :]) is not None
        )

    def exists(self, ref: str) -> bool:
        bucket, key = parse_s3_ref(ref)
        try:
            call("look for the upload", lambda: self.client.head_object(Bucket=bucket, Key=key))
        except AudioMissing:
            return False
        return True

    @contextlib.contextmanager
    def local_copy(self, ref: str, max_bytes: int) -> Iterator[Path]:
        """The object copied to a scratch folder (TMPDIR), removed on leaving; read as one
        stream, so the worker holds one chunk of it in memory at a time."""
        bucket, key = parse_s3_ref(ref)
        with tempfile.TemporaryDirectory(prefix="transcribe-") as folder:
            path = Path(folder) / "audio"
            answer = call(f"fetch {ref}", lambda: self.client.get_object(Bucket=bucket, Key=key))
            body = answer["Body"]
            try:
                if int(answer.get("ContentLength", 0)) > max_bytes:
                    raise AudioTooLarge(f"the audio is larger than the {max_bytes} byte limit")
                received = 0
                with path.open("wb") as handle:
                    for chunk in body.iter_chunks(DOWNLOAD_CHUNK_BYTES):
                        received += len(chunk)
                        if received > max_bytes:
                            raise AudioTooLarge(
                                f"the audio is larger than the {max_bytes} byte limit"
                            )
                        handle.write(chunk)
            except BotoCoreError as error:  # the stream broke off
                raise StorageUnavailable(f"fetch {ref}: {error}") from error
            finally:
                body.close()
            yield path

    def delete(self, ref: str) -> None:
        bucket, key = parse_s3_ref(ref)
        with contextlib.suppress(AudioMissing):
            call("delete the upload", lambda: self.client.delete_object(Bucket=bucket, Key=key))

    def listing(self) -> Iterator[Listed]:
        """Finished uploads named by their job, and unfinished multipart uploads, under the
        prefix; an unfinished one was last changed when its latest part arrived."""
        bucket = self.bucket
        objects = self.client.get_paginator("list_objects_v2")
        for page in call(
            "list the uploads", lambda: list(objects.paginate(Bucket=bucket, Prefix=self.prefix))
        ):
            for entry in page.get("Contents", []):
                name = str(entry["Key"])[len(self.prefix) :]
                if UPLOAD_KEY.match(name):
                    yield Listed(str(entry["Key"]), name, entry["LastModified"].timestamp())
        uploads = self.client.get_paginator("list_multipart_uploads")
        for page in call(
            "list unfinished uploads",
            lambda: list(uploads.paginate(Bucket=bucket, Prefix=self.prefix)),
        ):
            for entry in page.get("Uploads", []):
                key, upload_id = str(entry["Key"]), str(entry["UploadId"])
                if not UPLOAD_KEY.match(key[len(self.prefix) :]):
                    continue
                last = entry["Initiated"].timestamp()
                with contextlib.suppress(AudioMissing):
                    parts = call(
                        "list the parts of an unfinished upload",
                        functools.partial(
                            self.client.list_parts, Bucket=bucket, Key=key, UploadId=upload_id
                        ),
                    )
                    for part in parts.get("Parts", []):
                        last = max(last, part["LastModified"].timestamp())
                yield Listed(key, None, last, upload_id=upload_id)

    def remove(self, listed: Listed) -> None:
        bucket = self.bucket
        with contextlib.suppress(AudioMissing):
            if listed.upload_id is not None:
                upload_id = listed.upload_id
                call(
                    "abort an unfinished upload",
                    lambda: self.client.abort_multipart_upload(
                        Bucket=bucket, Key=listed.location, UploadId=upload_id
                    ),
                )
            else:
                call(
                    "delete an upload",
                    lambda: self.client.delete_object(Bucket=bucket, Key=listed.location),
                )
