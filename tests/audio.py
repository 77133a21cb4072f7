"""Audio fixtures made on the fly, and where the shared recordings are."""

from __future__ import annotations

import math
import re
import struct
import subprocess
import wave
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
JFK = SHARED_DATA / "jfk.flac"
JFK_PHRASE = "ask not what your country can do for you"
MULTILINGUAL = SHARED_DATA / "multilingual.mp3"
GERMAN_WORDS = {"der", "die", "und", "diese"}
"""Words the German half of multilingual.mp3 holds and an English text does not."""
ENGLISH_WORDS = {"the", "and", "of", "with"}


def write_german_clip(folder: Path) -> Path:
    """12 s of multilingual.mp3's German half (its first sentence, from 30 s), 16 kHz mono WAV."""
    clip = folder / "german.wav"
    cut = ["-ss", "30", "-t", "12", "-i", str(MULTILINGUAL), "-ac", "1", "-ar", "16000"]
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", *cut, str(clip)], check=True, timeout=60)
    return clip


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
