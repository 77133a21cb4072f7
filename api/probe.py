"""Checks with ffprobe that an upload is audio in an allowed container, and reads its duration."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from common.media import ALLOWED_DEMUXERS, FFMPEG_SAFETY_ARGS


class ProbeError(Exception):
    """The upload is not audio this service accepts; `detail` says why, for the client."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class AudioInfo:
    """What ffprobe read from the container."""

    format_name: str
    duration_s: float | None


async def probe_audio(path: Path, timeout_s: float) -> AudioInfo:
    """Probe a local file; raise ProbeError unless it holds an audio stream in an allowed format."""
    process = await asyncio.create_subprocess_exec(
        "ffprobe", "-v", "error", *FFMPEG_SAFETY_ARGS,
        "-show_entries", "format=format_name,duration:stream=codec_type",
        "-of", "json", f"file:{path}",
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
        raise ProbeError("the file could not be read as audio in time") from None
    if process.returncode != 0:
        reason = stderr.decode("utf-8", "replace").strip().splitlines()
        raise ProbeError(
            "the file is not audio in a supported format"
            + (f" ({reason[-1][:200]})" if reason else "")
        )
    try:
        report = json.loads(stdout)
    except json.JSONDecodeError:
        raise ProbeError("the file is not audio in a supported format") from None
    container = report.get("format") or {}
    format_name = str(container.get("format_name", ""))
    if not set(format_name.split(",")) & set(ALLOWED_DEMUXERS):
        raise ProbeError(f"container format {format_name or '(unknown)'!r} is not accepted")
    streams = report.get("streams") or []
    if not any(stream.get("codec_type") == "audio" for stream in streams):
        raise ProbeError("the file has no audio stream")
    duration: float | None = None
    with contextlib.suppress(TypeError, ValueError):
        duration = float(str(container.get("duration")))
    if duration is not None and (not math.isfinite(duration) or duration < 0):
        duration = None
    return AudioInfo(format_name=format_name, duration_s=duration)
