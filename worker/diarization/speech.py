"""Where someone speaks, per 10 ms frame: the pyannote segmentation model that ships in the
whisperx wheel, or webrtcvad where that model cannot load."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from worker.engines.base import SAMPLE_RATE, Audio

if TYPE_CHECKING:
    from worker.diarization.resemblyzer_backend import Tuning

log = logging.getLogger(__name__)

LIGHTNING_MIGRATION_LOG = "lightning.pytorch.utilities.migration.utils"
"""Logs, at every load, that the old checkpoint was upgraded in memory: not worth a line."""

FRAME_S = 0.01
"""Resemblyzer's mel frames are 10 ms apart; speech is decided per such frame."""

SEGMENTATION_WINDOW_S = 5.0
"""The segmentation model scores 5 s windows."""

Flags = npt.NDArray[np.bool_]
SpeechDetector = Callable[[Audio], Flags]
"""Audio → per 10 ms frame, whether someone speaks there (short pauses bridged, short bursts
dropped)."""


def segmentation_checkpoint() -> Path | None:
    """The segmentation model file in the installed whisperx wheel (the one its VAD uses)."""
    try:
        import whisperx
    except ImportError:
        return None
    path = Path(whisperx.__file__).parent / "assets" / "pytorch_model.bin"
    return path if path.is_file() else None


def load_speech_detector(device: str, tuning: Tuning) -> SpeechDetector:
    """The segmentation model's detector on `device`, or webrtcvad's when it cannot load."""
    checkpoint = segmentation_checkpoint()
    if checkpoint is not None:
        try:
            return SegmentationSpeech(checkpoint, device, tuning)
        except Exception as error:  # a broken install: webrtcvad still finds speech
            log.warning("segmentation model unavailable (%s); using webrtcvad", error)
    else:
        log.warning("whisperx's segmentation model is not installed; using webrtcvad")

    def detect(audio: Audio) -> Flags:
        return webrtc_speech(audio, tuning)

    return detect


class SegmentationSpeech:
    """pyannote/segmentation (bundled as whisperx's VAD model) over sliding 5 s windows: a
    frame is speech where the mean over the windows covering it of the most active local
    speaker's probability passes `speech_threshold`."""

    def __init__(self, checkpoint: Path, device: str, tuning: Tuning) -> None:
        import torch

        logging.getLogger(LIGHTNING_MIGRATION_LOG).setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pyannote's and Lightning's deprecation notices
            from pyannote.audio import Inference, Model

            model = Model.from_pretrained(str(checkpoint))
        if model is None:
            raise RuntimeError(f"no segmentation model in {checkpoint}")
        self._torch = torch
        self._inference: Any = Inference(
            model,
            duration=SEGMENTATION_WINDOW_S,
            step=tuning.segmentation_step_s,
            skip_aggregation=True,
            batch_size=16,
            device=torch.device(device),
        )
        self._tuning = tuning

    def __call__(self, audio: Audio) -> Flags:
        frames = int(len(audio) / SAMPLE_RATE / FRAME_S)
        window = round(SEGMENTATION_WINDOW_S * SAMPLE_RATE)
        padded = np.pad(audio, (0, max(0, window - len(audio)))).astype(np.float32)
        waveform = self._torch.from_numpy(padded[None])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = self._inference({"waveform": waveform, "sample_rate": SAMPLE_RATE})
        activity: npt.NDArray[np.float64] = np.asarray(scores.data, dtype=np.float64).max(axis=2)
        chunks, per_chunk = activity.shape
        step_s = SEGMENTATION_WINDOW_S / per_chunk
        starts = [round(scores.sliding_window[index].start / step_s) for index in range(chunks)]
        total = max(starts) + per_chunk
        summed, covered = np.zeros(total), np.zeros(total)
        for start, row in zip(starts, activity, strict=True):
            summed[start : start + per_chunk] += row
            covered[start : start + per_chunk] += 1
        probability = summed / np.maximum(covered, 1)
        at = np.clip(((np.arange(frames) + 0.5) * FRAME_S / step_s).astype(int), 0, total - 1)
        return tidy(probability[at] > self._tuning.speech_threshold, self._tuning)


def webrtc_speech(audio: Audio, tuning: Tuning) -> Flags:
    """Per 10 ms frame, whether webrtcvad (smoothed) hears speech there."""
    import webrtcvad

    vad = webrtcvad.Vad(tuning.vad_mode)
    step = round(tuning.vad_frame_s * SAMPLE_RATE)
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    voiced = np.array(
        [
            vad.is_speech(pcm[start : start + step].tobytes(), SAMPLE_RATE)
            for start in range(0, len(pcm) - step + 1, step)
        ],
        dtype=np.float64,
    )
    frames = int(len(audio) / SAMPLE_RATE / FRAME_S)
    speech = np.zeros(frames, dtype=bool)
    if voiced.size == 0:
        return speech
    width = tuning.vad_smoothing_frames
    if width > 1:
        voiced = np.convolve(voiced, np.ones(width) / width, mode="same")
    per_frame = np.repeat(voiced > 0.5, round(tuning.vad_frame_s / FRAME_S))[:frames]
    speech[: len(per_frame)] = per_frame
    return tidy(speech, tuning)


def tidy(speech: Flags, tuning: Tuning) -> Flags:
    """Pauses under `min_gap_s` inside speech bridged, then speech under `min_speech_s`
    dropped."""
    speech = fill_runs(speech, False, round(tuning.min_gap_s / FRAME_S))
    return fill_runs(speech, True, round(tuning.min_speech_s / FRAME_S))


def fill_runs(flags: Flags, value: bool, shorter_than: int) -> Flags:
    """`flags` with each inner run of `value` shorter than `shorter_than` frames flipped (a run
    of False is inner when speech surrounds it; any short run of True goes)."""
    result = flags.copy()
    for start, end in runs(flags == value):
        inner = value or (start > 0 and end < len(flags))
        if end - start < shorter_than and inner:
            result[start:end] = not value
    return result


def runs(mask: Flags) -> list[tuple[int, int]]:
    """[start, end) of each run of True in `mask`."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))
