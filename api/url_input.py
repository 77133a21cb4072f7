"""Downloads a client's audio URL into the uploads folder, under the outbound address rules.

Every hop (the URL and each redirect) is vetted by `common.outbound` after DNS resolution and
connected to at the vetted address. The body is streamed to a temporary file with the same size
limit as uploads; the whole download, redirects included, has one deadline. ffmpeg only ever
sees the downloaded file.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import mimetypes
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import httpx
from starlette.concurrency import run_in_threadpool

from api.uploads import ALLOWED_EXTENSIONS
from common.outbound import AsyncPinnedTransport, OutboundPolicy, redirect_target

USER_AGENT = "transcribe-service/1 (URL input)"
ACCEPT = "audio/*, video/*;q=0.8, application/octet-stream;q=0.5, */*;q=0.1"
WRITE_CHUNK_BYTES = 1024 * 1024


class DownloadError(Exception):
    """The URL could not be turned into a local file; carries the HTTP answer for the client."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


@dataclass
class Downloaded:
    """A downloaded body in the uploads folder, under a temporary name."""

    path: Path
    size: int
    extension: str | None
    """An allowed extension named by the URL's path or Content-Type; None when neither does."""

    def discard(self) -> None:
        """Remove the file, if it is still there."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


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


def _write_all(handle: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(handle, view) :]


def _sync_and_close(handle: int) -> None:
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


async def _save_body(response: httpx.Response, path: Path, max_bytes: int) -> int:
    size = 0
    pending = bytearray()
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise DownloadError(413, f"file too large: the limit is {max_bytes} bytes")
            pending += chunk
            if len(pending) >= WRITE_CHUNK_BYTES:
                await run_in_threadpool(_write_all, handle, bytes(pending))
                pending.clear()
        if pending:
            await run_in_threadpool(_write_all, handle, bytes(pending))
    except BaseException:
        os.close(handle)
        raise
    await run_in_threadpool(_sync_and_close, handle)
    return size


async def _fetch(
    url: str, policy: OutboundPolicy, path: Path, max_bytes: int, max_redirects: int
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
                raise DownloadError(502, detail) from None
            if following is not None:
                current = following
                continue
            if response.status_code != 200:
                raise DownloadError(
                    502, f"the audio URL answered HTTP {response.status_code}, not 200"
                )
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise DownloadError(413, f"file too large: the limit is {max_bytes} bytes")
            size = await _save_body(response, path, max_bytes)
            hint = extension_hint(target.url, response.headers.get("content-type"))
            return Downloaded(path=path, size=size, extension=hint)
    raise DownloadError(502, f"the audio URL redirected more than {max_redirects} times")


async def download(
    url: str,
    policy: OutboundPolicy,
    upload_dir: Path,
    max_bytes: int,
    timeout_s: float,
    max_redirects: int,
) -> Downloaded:
    """Fetch `url` into a temporary file in `upload_dir`.

    Raises OutboundRefused for a URL (or redirect) the address rules refuse, and DownloadError
    for everything else: 413 over `max_bytes`, 502 for an error answer, a failed connection or
    too many redirects, 504 past `timeout_s`, 507 with no space left. Nothing is left behind
    on error.
    """
    path = upload_dir / f".incoming-{secrets.token_hex(16)}"
    try:
        async with asyncio.timeout(timeout_s):
            return await _fetch(url, policy, path, max_bytes, max_redirects)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        if isinstance(error, TimeoutError):
            raise DownloadError(
                504, f"the audio URL could not be downloaded within {timeout_s:.0f} s"
            ) from None
        if isinstance(error, httpx.HTTPError):
            raise DownloadError(
                502, f"the audio URL could not be fetched: {type(error).__name__}: {error}"[:300]
            ) from None
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DownloadError(507, "the server has no space left for this download") from None
        raise
