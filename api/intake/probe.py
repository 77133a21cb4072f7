"""Checks that an upload is audio in an allowed container, and reads its duration.

PyAV reads the container (`pyav_helper`) where it is installed, else ffprobe; either way only
the one local file, or the one object behind a presigned URL (object storage), with the allowed
demuxers. Reading an object through its URL, rather than a head of it copied to disk, keeps the
probe right: FFmpeg fetches the ranges it needs (an MP4's index at the end included), and
estimates a headerless MP3's duration from the object's real size.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from api.errors import ServiceError
from api.intake import pyav_helper
from common.media import ALLOWED_DEMUXERS, FFMPEG_SAFETY_ARGS
from common.storage import ProbeTarget

log = logging.getLogger(__name__)

HELPER_GRACE_S = 2.0
"""Past the probe's own deadline, how long to wait for the helper to say it ended the child."""


@dataclass(frozen=True)
class AudioInfo:
    """What the probe read from the container."""

    format_name: str
    duration_s: float | None


async def probe_audio(target: ProbeTarget, timeout_s: float) -> AudioInfo:
    """Probe a local file (a Path) or an object (its presigned URL, a str); a 415 ServiceError
    unless it holds audio in an allowed container."""
    if pyav_helper.available():
        try:
            # Off the event loop: the first call starts the helper, and a write could block.
            pending = await run_in_threadpool(pyav_helper.prober().submit, target, timeout_s)
            report = await asyncio.wait_for(
                asyncio.wrap_future(pending), timeout_s + HELPER_GRACE_S
            )
        except pyav_helper.HelperUnavailable as error:
            log.warning("probing with ffprobe instead: %s", error)
        except (pyav_helper.ProbeTimeout, TimeoutError):
            raise ServiceError(415, "the file could not be read as audio in time") from None
        except pyav_helper.ContainerUnreadable as error:
            raise ServiceError(
                415, f"the file is not audio in a supported format ({error})"
            ) from None
        else:
            return _audio_info(
                report.format_name, "audio" in report.stream_types, report.duration_s
            )
    return await _probe_with_ffprobe(target, timeout_s)


def _audio_info(format_name: str, has_audio: bool, duration: object) -> AudioInfo:
    """Apply the rules to what a probe read: allowed container, an audio stream, a sane duration."""
    if not set(format_name.split(",")) & set(ALLOWED_DEMUXERS):
        raise ServiceError(415, f"container format {format_name or '(unknown)'!r} is not accepted")
    if not has_audio:
        raise ServiceError(415, "the file has no audio stream")
    seconds: float | None = None
    with contextlib.suppress(TypeError, ValueError):
        seconds = float(str(duration))
    if seconds is not None and (not math.isfinite(seconds) or seconds < 0):
        seconds = None
    return AudioInfo(format_name=format_name, duration_s=seconds)


def _safety_args(remote: bool) -> list[str]:
    """FFMPEG_SAFETY_ARGS, with the network protocols instead of `file` for a presigned URL."""
    args = list(FFMPEG_SAFETY_ARGS)
    if remote:
        args[args.index("-protocol_whitelist") + 1] = pyav_helper.REMOTE_PROTOCOLS
    return args


async def _probe_with_ffprobe(target: ProbeTarget, timeout_s: float) -> AudioInfo:
    remote = not isinstance(target, Path)
    source = str(target) if remote else f"file:{target}"
    process = await asyncio.create_subprocess_exec(
        "ffprobe", "-v", "error", *_safety_args(remote),
        "-show_entries", "format=format_name,duration:stream=codec_type",
        "-of", "json", source,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise ServiceError(415, "the file could not be read as audio in time") from None
    if process.returncode != 0:
        # ffprobe prefixes its message with the input's URL: the server's path, or a signed
        # URL, neither for clients.
        reason = (
            stderr.decode("utf-8", "replace")
            .replace(f"{source}: ", "")
            .replace(source, "the file")
            .strip()
            .splitlines()
        )
        raise ServiceError(
            415,
            "the file is not audio in a supported format"
            + (f" ({reason[-1][:200]})" if reason else ""),
        )
    try:
        report = json.loads(stdout)
    except json.JSONDecodeError:
        raise ServiceError(415, "the file is not audio in a supported format") from None
    container = report.get("format") or {}
    streams = report.get("streams") or []
    return _audio_info(
        str(container.get("format_name", "")),
        any(stream.get("codec_type") == "audio" for stream in streams),
        container.get("duration"),
    )
