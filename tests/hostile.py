"""Hostile and awkward media made on the fly with ffmpeg: decode bombs, lying headers, clips."""

from __future__ import annotations

import subprocess
from pathlib import Path

FLAC_STREAMINFO_OFFSET = 8
"""`fLaC` and the first metadata block header come before STREAMINFO's fields."""


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly, failing loudly."""
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def silent_flac(path: Path, seconds: float, rate: int = 8000) -> Path:
    """Digital silence as FLAC: hours of audio in a few MB (about 0.7 MB per hour at 8 kHz)."""
    ffmpeg(
        "-f", "lavfi", "-i", f"anullsrc=r={rate}:cl=mono", "-t", str(seconds),
        "-c:a", "flac", "-compression_level", "8", str(path),
    )  # fmt: skip
    return path


def falsify_flac_duration(source: Path, target: Path, claimed_seconds: float) -> Path:
    """A copy of a FLAC file whose STREAMINFO claims `claimed_seconds`; the frames stay."""
    data = bytearray(source.read_bytes())
    if data[:4] != b"fLaC":
        raise ValueError(f"{source} is not a FLAC file")
    start = FLAC_STREAMINFO_OFFSET + 10  # after the block and frame size fields
    fields = int.from_bytes(data[start : start + 8], "big")  # rate:20 channels:3 bits:5 total:36
    rate = fields >> 44
    total_mask = (1 << 36) - 1
    fields = (fields & ~total_mask) | int(claimed_seconds * rate)
    data[start : start + 8] = fields.to_bytes(8, "big")
    target.write_bytes(bytes(data))
    return target


def clip(source: Path, target: Path, seconds: float, start_s: float = 0.0) -> Path:
    """The first `seconds` (from `start_s`) of `source`, re-encoded by target's extension."""
    ffmpeg("-ss", str(start_s), "-t", str(seconds), "-i", str(source), str(target))
    return target


def video_without_audio(path: Path) -> Path:
    """A one-second MPEG-4 video with no audio stream."""
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10", "-t", "1",
        "-c:v", "mpeg4", "-an", str(path),
    )  # fmt: skip
    return path
