"""The bundled backend's steps on made-up data: speaker-count estimation, smoothing, turns."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from common.speakers import Turn
from worker.diarization.base import SpeakerCount
from worker.diarization.resemblyzer_backend import Tuning, cluster, smooth, turns_of
from worker.diarization.speech import fill_runs, webrtc_speech

TUNING = Tuning()


def voices(*counts: int, spread: float = 0.05, seed: int = 7) -> npt.NDArray[np.float64]:
    """Unit embeddings around one random direction per voice, `counts[i]` of voice i."""
    rng = np.random.default_rng(seed)
    groups = []
    for count in counts:
        centre = rng.normal(size=64)
        groups.append(centre + spread * np.linalg.norm(centre) * rng.normal(size=(count, 64)))
    embeddings = np.concatenate(groups)
    normed: npt.NDArray[np.float64] = embeddings / np.linalg.norm(embeddings, axis=1)[:, None]
    return normed


def speakers_in(labels: npt.NDArray[np.int_]) -> int:
    return len(set(labels.tolist()))


def test_two_distinct_voices_are_two_speakers() -> None:
    labels = cluster(voices(30, 20), SpeakerCount(), TUNING)
    assert speakers_in(labels) == 2
    assert speakers_in(labels[:30]) == speakers_in(labels[30:]) == 1


def test_one_voice_is_one_speaker() -> None:
    assert speakers_in(cluster(voices(40), SpeakerCount(), TUNING)) == 1


def test_a_few_stray_windows_are_not_a_second_speaker() -> None:
    assert speakers_in(cluster(voices(45, 3), SpeakerCount(), TUNING)) == 1


def test_too_little_speech_is_one_speaker_unless_told() -> None:
    few = voices(6, 6)
    assert speakers_in(cluster(few, SpeakerCount(), TUNING)) == 1
    assert speakers_in(cluster(few, SpeakerCount(exact=2), TUNING)) == 2


def test_counts_and_bounds_are_honoured() -> None:
    three = voices(20, 20, 20)
    assert speakers_in(cluster(three, SpeakerCount(), TUNING)) == 3
    assert speakers_in(cluster(three, SpeakerCount(maximum=2), TUNING)) == 2
    assert speakers_in(cluster(voices(40), SpeakerCount(minimum=2), TUNING)) == 2
    assert speakers_in(cluster(three, SpeakerCount(exact=1), TUNING)) == 1


def test_short_flips_take_the_speaker_around_them() -> None:
    frames = np.array([0] * 100 + [1] * 20 + [0] * 100 + [-1] * 50 + [1] * 100)
    smoothed = smooth(frames, 50)
    assert smoothed[100:120].tolist() == [0] * 20
    assert (smoothed[-100:] == 1).all()
    assert (smoothed[220:270] == -1).all()


def test_turns_join_one_speakers_short_pauses_only() -> None:
    frames = np.array([0] * 100 + [-1] * 20 + [0] * 100 + [-1] * 80 + [1] * 50)
    assert turns_of(frames, bridge=30) == [Turn(0.0, 2.2, "0"), Turn(3.0, 3.5, "1")]


def test_short_pauses_are_bridged_and_short_bursts_dropped() -> None:
    flags = np.array([True] * 50 + [False] * 10 + [True] * 50 + [False] * 100 + [True] * 5)
    bridged = fill_runs(flags, False, 30)
    assert bridged[:110].all()
    assert not fill_runs(bridged, True, 20)[-5:].any()


def test_webrtcvad_hears_a_voice_like_sound_and_not_silence() -> None:
    rate = 16_000
    seconds = np.arange(2 * rate) / rate
    # A buzzing 150 Hz voice-like tone with harmonics, then a second of silence.
    buzz = sum(np.sin(2 * np.pi * 150 * k * seconds) / k for k in range(1, 12))
    audio = np.concatenate([0.3 * buzz, np.zeros(rate)]).astype(np.float32)
    speech = webrtc_speech(audio, Tuning(vad_mode=0))
    assert len(speech) == 300
    assert speech[:180].mean() > 0.8
    assert not speech[220:].any()
