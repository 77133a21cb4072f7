"""Downloads a client's audio URL into its staged upload, under the outbound address rules.

Every hop (the URL and each redirect) is vetted after DNS resolution and connected to at the
vetted address; the body streams under the upload size limit, all within one deadline.
"""

from __future__ import annotations

import asyncio
import mimetypes
from dataclasses import dataclass
from pathlib import Path

import httpx
from starlette.concurrency import run_in_threadpool

from api.errors import InvalidField, ServiceError
from api.intake.multipart import ALLOWED_EXTENSIONS
from common.outbound import (
    AsyncPinnedTransport,
    OutboundPolicy,
    OutboundRefused,
    Unresolvable,
    redirect_target,
)
from common.storage import StagedUpload

USER_AGENT = "transcribe-service/1 (URL input)"
ACCEPT = "audio/*, video/*;q=0.8, application/octet-stream;q=0.5, */*;q=0.1"
WRITE_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Downloaded:
    """What was saved into the staged upload."""

    size: int
    extension: str | None
    """An allowed extension named by the URL's path or Content-Type; None when neither does."""


def extension_hint(url: httpx.URL, content_type: str | None) -> str | None:
    """The audio extension the URL's path or the answer's Content-Type names, if allowed."""
    suffix = Path(url.path).suffix.lower().lstrip(".")
    if suffix in ALLOWED_EXTENSIONS:
        return suffix
    if content_type:
        guessed = mimetypes.guess_extension(content_type.split(";")[0].strip().lower())
        if guessed and guessed.lstrip(".") in ALLOWED_EXTENSIONS:
            return guessed.lstrip(".")
    return None


async def _save_body(response: httpx.Response, staged: StagedUpload, max_bytes: int) -> int:
    size = 0
    pending = bytearray()
    sink = staged.open_sink()
    try:
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise ServiceError(413, f"file too large: the limit is {max_bytes} bytes")
            pending += chunk
            if len(pending) >= WRITE_CHUNK_BYTES:
                await run_in_threadpool(sink.write, bytes(pending))
                pending.clear()
        if pending:
            await run_in_threadpool(sink.write, bytes(pending))
        await run_in_threadpool(sink.finish)
    finally:
        sink.close()  # a no-op once finished
    return size


async def _fetch(
    url: str, policy: OutboundPolicy, staged: StagedUpload, max_bytes: int, max_redirects: int
) -> Downloaded:
    current: str | httpx.URL = url  # parsed by policy.vet, which refuses a malformed URL
    for _ in range(max_redirects + 1):
        target = await run_in_threadpool(policy.vet, current)
        transport = AsyncPinnedTransport(target)
        async with (
            httpx.AsyncClient(
                transport=transport, trust_env=False, follow_redirects=False
            ) as client,
            client.stream(
                "GET", target.url, headers={"User-Agent": USER_AGENT, "Accept": ACCEPT}
            ) as response,
        ):
            try:
                following = redirect_target(response, target.url)
            except httpx.InvalidURL as error:
                detail = f"the audio URL redirected to a bad location: {error}"
                raise ServiceError(502, detail) from None
            if following is not None:
                current = following
                continue
            if response.status_code != 200:
                raise ServiceError(
                    502, f"the audio URL answered HTTP {response.status_code}, not 200"
                )
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise ServiceError(413, f"file too large: the limit is {max_bytes} bytes")
            size = await _save_body(response, staged, max_bytes)
            hint = extension_hint(target.url, response.headers.get("content-type"))
            return Downloaded(size=size, extension=hint)
    raise ServiceError(502, f"the audio URL redirected more than {max_redirects} times")


async def download(
    url: str,
    policy: OutboundPolicy,
    staged: StagedUpload,
    max_bytes: int,
    timeout_s: float,
    max_redirects: int,
) -> Downloaded:
    """Fetch `url` into the `staged` upload.

    Raises ServiceError: 422 (on `url`) for a URL or redirect the address rules refuse, 413
    over `max_bytes`, 502 for a host that cannot be resolved, an error answer, a failed
    connection or too many redirects, 504 past `timeout_s`.
    """
    try:
        async with asyncio.timeout(timeout_s):
            return await _fetch(url, policy, staged, max_bytes, max_redirects)
    except TimeoutError:
        raise ServiceError(
            504, f"the audio URL could not be downloaded within {timeout_s:.0f} s"
        ) from None
    except httpx.HTTPError as error:
        raise ServiceError(
            502, f"the audio URL could not be fetched: {type(error).__name__}: {error}"[:300]
        ) from None
    except Unresolvable as unreachable:
        raise ServiceError(502, f"the audio URL cannot be reached: {unreachable.reason}") from None
    except OutboundRefused as refused:
        raise InvalidField("url", f"url refused: {refused.reason}", url) from None
