"""Media made on the fly with ffmpeg: the containers users have, decode bombs, lying headers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av

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


VIDEO_TRACK = ("-f", "lavfi", "-i", "color=c=black:size=64x48:rate=5")
"""A tiny black video input, for containers that usually carry video beside the audio."""

CONTAINER_ARGS: dict[str, tuple[str, ...]] = {
    "aif": ("-f", "aiff"),
    "aiff": ("-f", "aiff"),
    "aifc": ("-f", "aiff", "-c:a", "pcm_s16be"),
    "caf": ("-c:a", "pcm_s16le"),
    "wma": ("-c:a", "wmav2"),
    "3gp": ("-c:a", "aac", "-ac", "1", "-ar", "16000"),
    "3g2": ("-f", "3g2", "-c:a", "aac", "-ac", "1", "-ar", "16000"),
    "mov": ("-c:v", "mpeg4", "-c:a", "aac"),
    "m4v": ("-f", "mp4", "-c:v", "mpeg4", "-c:a", "aac"),
    "mkv": ("-c:v", "mpeg4", "-c:a", "flac"),
    "avi": ("-c:v", "mpeg4", "-c:a", "pcm_s16le"),
    "wmv": ("-c:v", "wmv2", "-c:a", "wmav2"),
}
"""How ffmpeg writes the containers whose extension alone does not say it (the others take
ffmpeg's defaults for their extension); the video containers get a video track too, as a
phone's or a camera's recordings have."""


def in_container(source: Path, target: Path, seconds: float) -> Path:
    """The first `seconds` of `source` in the container `target`'s extension names.

    AMR comes from ffmpeg's libraries through PyAV, whose build has the AMR-NB encoder that
    Debian's ffmpeg program lacks; every other container from the ffmpeg program.
    """
    extension = target.suffix.lstrip(".").lower()
    if extension == "amr":
        return _amr_nb(source, target, seconds)
    args = CONTAINER_ARGS.get(extension, ())
    video = VIDEO_TRACK if "-c:v" in args else ()
    ffmpeg(*video, "-t", str(seconds), "-i", str(source), "-t", str(seconds), *args, str(target))
    return target


def _amr_nb(source: Path, target: Path, seconds: float) -> Path:
    with av.open(str(source)) as decoding, av.open(str(target), "w", format="amr") as encoding:
        stream = encoding.add_stream("libopencore_amrnb", rate=8000, layout="mono")
        stream.bit_rate = 12_200
        resampler = av.AudioResampler(format="s16", layout="mono", rate=8000)
        for frame in decoding.decode(audio=0):
            if frame.time is not None and frame.time >= seconds:
                break
            for resampled in resampler.resample(frame):
                encoding.mux(stream.encode(resampled))
        encoding.mux(stream.encode(None))
    return target
