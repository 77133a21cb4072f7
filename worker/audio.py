"""Decodes an uploaded file to 16 kHz mono float32 with ffmpeg, confined to that local file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from common.media import FFMPEG_SAFETY_ARGS
from worker.engines.base import SAMPLE_RATE, Audio


class AudioDecodeError(RuntimeError):
    """ffmpeg could not decode the file as audio."""


def decode_audio(path: Path, max_duration_s: float, timeout_s: float) -> Audio:
    """The file's first audio stream as mono float32 samples at SAMPLE_RATE.

    Decoding stops at `max_duration_s` whatever the container claims, so a file whose headers lie
    cannot make the worker decode hours of audio into memory.
    """
    command = [
        "ffmpeg", "-nostdin", "-v", "error", "-threads", "0",
        *FFMPEG_SAFETY_ARGS,
        "-i", f"file:{path}",
        "-map", "0:a:0", "-t", f"{max_duration_s:.3f}",
        "-f", "s16le", "-ac", "1", "-ar", str(SAMPLE_RATE), "-acodec", "pcm_s16le",
        "pipe:1",
    ]  # fmt: skip
    try:
        completed = subprocess.run(command, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise AudioDecodeError(f"decoding took longer than {timeout_s:.0f} s") from None
    if completed.returncode != 0:
        lines = completed.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = lines[-1][:300] if lines else f"ffmpeg exited with {completed.returncode}"
        raise AudioDecodeError(f"the audio could not be decoded: {reason}")
    samples = np.frombuffer(completed.stdout, dtype=np.int16)
    if samples.size == 0:
        raise AudioDecodeError("the file decodes to no audio samples")
    return (samples.astype(np.float32) / 32768.0).astype(np.float32)
