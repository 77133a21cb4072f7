"""Recordings with known speakers, for diarization tests and benchmarks: the shared meetings
with their reference turns, and two-speaker recordings built here with references that follow
from how they were built."""

from __future__ import annotations

import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from common.speakers import Turn
from tests.audio import SHARED_DATA

RATE = 16_000
STEREO = SHARED_DATA / "stereo_diarization.wav"
MEETINGS_RTTM = SHARED_DATA / "meetings.rttm"
MEETINGS = ("meeting_dev00", "meeting_dev01")

PAUSE_S = 0.6
"""Silence between the turns of a built recording, seconds."""

ESPEAK_VOICES = ("en-us+m3", "en-gb+f4")
"""Two espeak-ng voices that differ in pitch and accent."""

ESPEAK_LINES = (
    "Good morning everyone, thank you for coming to the planning meeting today.",
    "Thanks. Before we start, could we look at the budget for the next quarter?",
    "Of course. The numbers came in yesterday and they look better than expected.",
    "That is good news. Then I would like to hire two more engineers this spring.",
)

Samples = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Recording:
    """Mono 16 kHz audio and who speaks when in it."""

    name: str
    samples: Samples
    reference: list[Turn]

    @property
    def duration_s(self) -> float:
        """Its length, seconds."""
        return len(self.samples) / RATE

    @property
    def speakers(self) -> int:
        """How many speakers the reference has."""
        return len({turn.speaker for turn in self.reference})

    def write_wav(self, path: Path) -> Path:
        """The audio as a 16-bit mono WAV at `path`."""
        pcm = (np.clip(self.samples, -1.0, 1.0) * 32767).astype("<i2")
        with wave.open(str(path), "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(RATE)
            handle.writeframes(pcm.tobytes())
        return path


def decode(path: Path, channel: int | None = None) -> Samples:
    """A file (or one of its channels) as mono float32 at 16 kHz, through ffmpeg."""
    command = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path)]
    if channel is not None:
        command += ["-af", f"pan=mono|c0=c{channel}"]
    command += ["-f", "s16le", "-ac", "1", "-ar", str(RATE), "pipe:1"]
    pcm = subprocess.run(command, capture_output=True, check=True).stdout
    return (np.frombuffer(pcm, dtype="<i2") / 32768).astype(np.float32)


def speech_extent(samples: Samples, threshold_db: float = -35.0) -> tuple[float, float]:
    """First and last moment, seconds, of the 20 ms frames within `threshold_db` of the
    loudest one: where someone starts and stops speaking in a clip of one utterance."""
    frame = RATE // 50
    count = len(samples) // frame
    energy = (samples[: count * frame].reshape(count, frame) ** 2).mean(axis=1) + 1e-12
    level = 10 * np.log10(energy)
    loud = np.flatnonzero(level >= level.max() + threshold_db)
    return float(loud[0] * frame / RATE), float((loud[-1] + 1) * frame / RATE)


def in_turns(name: str, clips: list[tuple[str, Samples]]) -> Recording:
    """The clips one after the other with PAUSE_S between them; each clip is one turn of its
    speaker, from its speech's start to its end."""
    pause = np.zeros(round(PAUSE_S * RATE), dtype=np.float32)
    parts: list[Samples] = []
    reference: list[Turn] = []
    offset = 0.0
    for speaker, clip in clips:
        start, end = speech_extent(clip)
        reference.append(Turn(round(offset + start, 3), round(offset + end, 3), speaker))
        parts += [clip, pause]
        offset += (len(clip) + len(pause)) / RATE
    return Recording(name, np.concatenate(parts[:-1]), reference)


def stereo_in_turns(repeats: int = 1) -> Recording:
    """stereo_diarization.wav's left speaker, then its right one (`repeats` times): two
    speakers who never overlap."""
    left, right = decode(STEREO, 0), decode(STEREO, 1)
    clips = [("left", left), ("right", right)] * repeats
    return in_turns(f"stereo_turns_x{repeats}", clips)


def stereo_overlapping() -> Recording:
    """stereo_diarization.wav mixed to mono: its two speakers talk at once."""
    left, right = decode(STEREO, 0), decode(STEREO, 1)
    reference = [
        Turn(*speech_extent(left), "left"),
        Turn(*speech_extent(right), "right"),
    ]
    mix = (left + right) / 2
    return Recording("stereo_overlap", mix.astype(np.float32), sorted(reference, key=_start))


def _start(turn: Turn) -> float:
    return turn.start


def espeak_available() -> bool:
    """Whether espeak-ng is installed (scripts/install-system-deps.sh installs it)."""
    return shutil.which("espeak-ng") is not None


def espeak(text: str, voice: str, directory: Path) -> Samples:
    """`text` spoken by espeak-ng's `voice`, as 16 kHz mono."""
    path = directory / f"espeak-{abs(hash((text, voice)))}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
    return decode(path)


def espeak_dialogue(directory: Path) -> Recording:
    """Two espeak-ng voices taking turns over ESPEAK_LINES."""
    clips = [
        (voice, espeak(line, voice, directory))
        for line, voice in zip(ESPEAK_LINES, ESPEAK_VOICES * 2, strict=True)
    ]
    return in_turns("espeak_dialogue", clips)


def meeting_reference(name: str) -> list[Turn]:
    """The reference turns of one shared meeting recording, from meetings.rttm."""
    turns = []
    for line in MEETINGS_RTTM.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[0] == "SPEAKER" and fields[1] == name:
            start, duration = float(fields[3]), float(fields[4])
            turns.append(Turn(start, start + duration, fields[7]))
    return turns


def meeting(name: str) -> Recording:
    """One of the shared 30 s meeting recordings (MEETINGS) with its reference."""
    return Recording(name, decode(SHARED_DATA / f"{name}.wav"), meeting_reference(name))


def diarization_error_rate(
    reference: list[Turn],
    hypothesis: list[Turn],
    duration_s: float,
    scored: list[tuple[float, float]] | None = None,
) -> float:
    """pyannote.metrics' DER (no collar, overlaps scored) of `hypothesis` against `reference`
    over the whole recording, `duration_s` long, or only over the `scored` spans."""
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    def annotation(turns: list[Turn]) -> Annotation:
        result = Annotation()
        for index, turn in enumerate(turns):
            result[Segment(turn.start, turn.end), index] = turn.speaker
        return result

    metric = DiarizationErrorRate()
    spans = [(0.0, duration_s)] if scored is None else scored
    uem = Timeline([Segment(start, end) for start, end in spans])
    return float(metric(annotation(reference), annotation(hypothesis), uem=uem))
