"""Audio fixtures made on the fly, and where the shared recordings are."""

from __future__ import annotations

import math
import re
import struct
import wave
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
JFK = SHARED_DATA / "jfk.flac"
JFK_PHRASE = "ask not what your country can do for you"


def write_tone_wav(path: Path, seconds: float = 1.0, rate: int = 16_000) -> Path:
    """A real mono 16-bit WAV with a 440 Hz tone."""
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / rate)))
        for n in range(int(seconds * rate))
    )
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(frames)
    return path


def normalize(text: str) -> str:
    """Lower case, punctuation dropped, single spaces: for comparing transcripts."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())
