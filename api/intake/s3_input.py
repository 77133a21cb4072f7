"""s3:// input: a client's object in a bucket the server may read (S3_INPUT_BUCKETS), taken
where it is: read with the server's credentials, never copied to the API, never deleted."""

from __future__ import annotations

import re

from starlette.concurrency import run_in_threadpool

from api.errors import InvalidField, ServiceError
from common.storage import (
    S3_SCHEME,
    AudioMissing,
    AudioUnreadable,
    InputAudio,
    Storage,
)
from config import Settings

BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
"""S3's rules for a bucket's name (lower-case letters, digits, dots and hyphens, 3 to 63)."""
MAX_KEY_BYTES = 1024
"""S3's longest key, in UTF-8 bytes."""
UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


def is_s3_url(url: str) -> bool:
    """Whether the URL names an object (`s3://…`, the scheme in any case)."""
    return url[: len(S3_SCHEME)].lower() == S3_SCHEME


def parse_input_url(url: str, settings: Settings) -> tuple[str, str]:
    """The bucket and key of an s3:// URL this server takes; a 422 (on `url`) otherwise.

    Only buckets in S3_INPUT_BUCKETS are read, and within S3_BUCKET never the service's own
    uploads. A key must be a plain S3 key: no empty, `.` or `..` segments (stores that map keys
    onto paths would read another object than the one named), no control characters.
    """

    def refuse(reason: str) -> InvalidField:
        return InvalidField("url", f"url refused: {reason}", url)

    bucket, slash, key = url[len(S3_SCHEME) :].partition("/")
    if not settings.s3_input_buckets:
        raise refuse("this server takes no s3:// input (S3_INPUT_BUCKETS is empty)")
    if not BUCKET_NAME.match(bucket) or ".." in bucket:
        raise refuse("s3:// URLs name a bucket (3 to 63 of a-z, 0-9, '.', '-') and a key")
    if bucket not in settings.s3_input_buckets:
        raise refuse(f"bucket {bucket!r} is not one this server reads (S3_INPUT_BUCKETS)")
    if not slash or not key:
        raise refuse("the s3:// URL names no object key")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise refuse(f"the object key is longer than {MAX_KEY_BYTES} bytes")
    if UNPRINTABLE.search(key):
        raise refuse("the object key holds control characters")
    if any(segment in ("", ".", "..") for segment in key.split("/")):
        raise refuse("the object key has an empty, '.' or '..' segment")
    if bucket == settings.s3_bucket and key.startswith(settings.s3_prefix):
        raise refuse("that is where this server keeps its own uploads")
    return bucket, key


def input_object(url: str, settings: Settings, storage: Storage) -> InputAudio:
    """The object an accepted s3:// URL names (nothing is read yet)."""
    bucket, key = parse_input_url(url, settings)
    return storage.objects.input_object(bucket, key)


async def check_input(url: str, audio: InputAudio, max_bytes: int) -> None:
    """The object is there, readable with the server's credentials and within `max_bytes`.

    Raises a 422 (on `url`) for a missing or unreadable object, a 413 over `max_bytes`; an
    unreachable store is the caller's StorageUnavailable (a 503).
    """
    try:
        size = await run_in_threadpool(audio.size)
    except AudioMissing:
        raise InvalidField("url", "url refused: no such object", url) from None
    except AudioUnreadable:
        raise InvalidField(
            "url", "url refused: this server's credentials may not read that object", url
        ) from None
    if size > max_bytes:
        raise ServiceError(413, f"file too large: the limit is {max_bytes} bytes")
