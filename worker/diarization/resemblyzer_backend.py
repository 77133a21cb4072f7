"""The bundled backend: speech from the pyannote segmentation model that ships in the whisperx
wheel (webrtcvad where it cannot load), Resemblyzer voice embeddings over sliding windows,
agglomerative clustering; every weight ships in a package, so it runs offline."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from common.speakers import Turn
from worker.diarization.base import DiarizerContext, SpeakerCount
from worker.diarization.labels import relabel_in_order
from worker.diarization.speech import FRAME_S, load_speech_detector, runs
from worker.engines.base import Audio

log = logging.getLogger(__name__)

EMBED_BATCH = 256
"""Windows embedded per call of the encoder."""

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Tuning:
    """The backend's knobs, seconds unless said otherwise (chosen on the meeting recordings
    and built two-speaker recordings of `bench/diarization.py`)."""

    speech_threshold: float = 0.5
    """Speech probability (segmentation model) above which a frame is speech."""
    segmentation_step_s: float = 2.5
    """Step between the segmentation model's 5 s windows."""
    vad_mode: int = 2
    """webrtcvad aggressiveness, 0 (keeps most) to 3 (keeps least); webrtcvad decides speech
    only where the segmentation model cannot load."""
    vad_frame_s: float = 0.03
    """webrtcvad's frame length (10, 20 or 30 ms)."""
    vad_smoothing_frames: int = 8
    """Width of the moving average over webrtcvad's decisions, in VAD frames."""
    min_gap_s: float = 0.3
    """Pauses shorter than this inside speech are bridged."""
    min_speech_s: float = 0.2
    """Speech regions shorter than this are dropped."""
    window_s: float = 1.5
    """Length of the audio each embedding is computed on."""
    hop_s: float = 0.25
    """Step between embedding windows."""
    max_windows: int = 3000
    """Most embedding windows per recording (12.5 min at `hop_s`); longer recordings get a
    longer step, as clustering's time and memory grow with the square of the windows."""
    min_window_speech: float = 0.5
    """Fraction of a window that must be speech for its embedding to be used."""
    max_speakers: int = 8
    """Most speakers considered when the job gives no bound."""
    min_windows: int = 20
    """With fewer embedding windows than this (about 6 s of speech) one speaker is assumed
    unless the job gives a count: too little speech to tell voices apart."""
    min_separation: float = 0.1
    """A two-way split whose halves are less separated than this (within-cluster minus
    across-cluster cosine similarity) is one speaker."""
    min_second_share: float = 0.2
    """A two-way split whose smaller half has less than this share of the windows is one
    speaker (the rest is noise, laughter, a cough)."""
    min_cluster_share: float = 0.2
    """Each speaker of a split into three or more must have this share of the windows."""
    min_turn_s: float = 0.5
    """A speaker run shorter than this between runs of another speaker is theirs."""
    target_dbfs: float = -30.0
    """Quiet audio is raised to this loudness before embedding (Resemblyzer's own level)."""


class ResemblyzerDiarizer:
    """Resemblyzer's VoiceEncoder, loaded once on the worker's device."""

    def __init__(self, context: DiarizerContext, tuning: Tuning | None = None) -> None:
        import torch  # heavy: only the worker imports it

        with warnings.catch_warnings():
            # Resemblyzer imports scipy.ndimage.morphology, deprecated since SciPy 1.8.
            warnings.simplefilter("ignore", DeprecationWarning)
            from resemblyzer import VoiceEncoder
            from resemblyzer.audio import normalize_volume, wav_to_mel_spectrogram

        self._torch = torch
        self._encoder: Any = VoiceEncoder(device=context.device, verbose=False)
        self._mel = wav_to_mel_spectrogram
        self._normalize = normalize_volume
        self.tuning = tuning = tuning or Tuning()
        self._speech = load_speech_detector(context.device, tuning)
        log.info("loaded the Resemblyzer voice encoder on %s", context.device)

    def diarize(self, audio: Audio, count: SpeakerCount) -> list[Turn]:
        """Who speaks when (see `Diarizer.diarize`): speech frames, one embedding per window
        with enough speech, clusters of embeddings, each speech frame given the cluster of the
        nearest window, short flips smoothed away."""
        tuning = self.tuning
        speech = self._speech(audio)
        if not speech.any():
            return []
        wav = self._normalize(audio.astype(np.float32), tuning.target_dbfs, increase_only=True)
        mel = np.asarray(self._mel(wav), dtype=np.float32)
        speech = speech[: len(mel)]
        starts = window_starts(speech, tuning)
        if not starts:
            return []
        embeddings = self._embed(mel, starts, round(tuning.window_s / FRAME_S))
        labels = cluster(embeddings, count, tuning)
        centres = np.asarray(starts, dtype=np.float64) + tuning.window_s / FRAME_S / 2
        frame_labels = label_frames(speech, centres, labels)
        frame_labels = smooth(frame_labels, round(tuning.min_turn_s / FRAME_S))
        return relabel_in_order(turns_of(frame_labels, round(tuning.min_gap_s / FRAME_S)))

    def _embed(self, mel: npt.NDArray[np.float32], starts: list[int], width: int) -> Floats:
        """One embedding per window, EMBED_BATCH windows at a time (bounded memory)."""
        torch = self._torch
        padded = np.pad(mel, ((0, max(0, starts[-1] + width - len(mel))), (0, 0)))
        embeddings = []
        for first in range(0, len(starts), EMBED_BATCH):
            chosen = starts[first : first + EMBED_BATCH]
            batch = np.stack([padded[start : start + width] for start in chosen])
            with torch.inference_mode():
                tensor = torch.from_numpy(batch).to(self._encoder.device)
                embeddings.append(self._encoder(tensor).cpu().numpy())
        return np.asarray(np.concatenate(embeddings), dtype=np.float64)


def window_starts(speech: npt.NDArray[np.bool_], tuning: Tuning) -> list[int]:
    """First frames of the embedding windows: every hop (longer where the recording would
    need more than `max_windows`), keeping the windows that are at least `min_window_speech`
    speech; a recording with speech but no such window (one short word) gets one window
    centred on its speech."""
    width = round(tuning.window_s / FRAME_S)
    # Long recordings get a longer hop: clustering costs the square of the windows.
    hop = max(1, round(tuning.hop_s / FRAME_S), -(-len(speech) // tuning.max_windows))
    needed = tuning.min_window_speech * width
    cumulative = np.concatenate(([0], np.cumsum(speech)))
    starts = [
        start
        for start in range(0, max(1, len(speech) - width // 2), hop)
        if cumulative[min(start + width, len(speech))] - cumulative[start] >= needed
    ]
    if not starts and speech.any():
        centre = int(np.flatnonzero(speech).mean())
        starts = [max(0, centre - width // 2)]
    return starts


def cluster(embeddings: Floats, count: SpeakerCount, tuning: Tuning) -> npt.NDArray[np.int_]:
    """A cluster number per embedding: `count.exact` clusters when given; else one cluster
    when the bounds allow it and the two-way split is not two voices (`two_voices`), otherwise,
    among the numbers the bounds allow, the one whose split has the best silhouette with no
    cluster under `min_cluster_share` of the windows."""
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import silhouette_score

    n = len(embeddings)
    if count.exact is not None:
        candidates = [min(count.exact, n)]
    else:
        high = max(1, min(n, count.maximum or tuning.max_speakers))
        low = min(max(1, count.minimum or 1), high)
        candidates = list(range(low, high + 1))
    if candidates == [1] or n < 2:
        return np.zeros(n, dtype=np.int_)

    def split(k: int) -> npt.NDArray[np.int_]:
        model = AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average")
        return np.asarray(model.fit_predict(embeddings), dtype=np.int_)

    if len(candidates) == 1:
        return split(candidates[0])
    splits = {k: split(k) for k in candidates if k >= 2}
    if 1 in candidates and not two_voices(embeddings, splits[2], tuning):
        return np.zeros(n, dtype=np.int_)
    balanced = {
        k: labels
        for k, labels in splits.items()
        if k == 2 or (k < n and np.bincount(labels).min() >= tuning.min_cluster_share * n)
    }
    scores = {
        k: float(silhouette_score(embeddings, labels, metric="cosine"))
        for k, labels in balanced.items()
        if k < n
    }
    if not scores:  # no allowed number splits evenly: the fewest speakers allowed
        return splits[min(splits)]
    return balanced[max(scores, key=lambda k: scores[k])]


def two_voices(embeddings: Floats, labels: npt.NDArray[np.int_], tuning: Tuning) -> bool:
    """Whether a two-way split is two speakers: enough windows, a second half that is not a
    few stray windows, and halves apart enough (see `Tuning`)."""
    n = len(embeddings)
    share = np.bincount(labels, minlength=2).min() / n
    apart = separation(embeddings, labels)
    log.debug("two-way split of %d windows: smaller share %.2f, separation %.3f", n, share, apart)
    return (
        n >= tuning.min_windows
        and share >= tuning.min_second_share
        and apart >= tuning.min_separation
    )


def separation(embeddings: Floats, labels: npt.NDArray[np.int_]) -> float:
    """How much more alike the embeddings within each of two clusters are than those across:
    the mean within-cluster cosine similarity minus the mean across."""
    similarity = embeddings @ embeddings.T
    first, second = labels == 0, labels == 1
    within = (
        similarity[np.ix_(first, first)].mean() + similarity[np.ix_(second, second)].mean()
    ) / 2
    across = similarity[np.ix_(first, second)].mean()
    return float(within - across)


def label_frames(
    speech: npt.NDArray[np.bool_], centres: Floats, labels: npt.NDArray[np.int_]
) -> npt.NDArray[np.int_]:
    """Per frame, the label of the window whose centre is nearest; -1 where nobody speaks."""
    frames = np.arange(len(speech), dtype=np.float64) + 0.5
    after = (
        np.clip(np.searchsorted(centres, frames), 1, len(centres) - 1) if len(centres) > 1 else None
    )
    if after is None:
        nearest = np.zeros(len(speech), dtype=np.int_)
    else:
        before = after - 1
        nearest = np.where(
            np.abs(frames - centres[before]) <= np.abs(centres[after] - frames), before, after
        )
    return np.where(speech, labels[nearest], -1)


def smooth(frame_labels: npt.NDArray[np.int_], min_run: int) -> npt.NDArray[np.int_]:
    """Runs of one speaker shorter than `min_run` frames (silence not counted) take the label
    of the speaker before them, or after them at the start."""
    speaking = np.flatnonzero(frame_labels >= 0)
    if speaking.size == 0:
        return frame_labels
    sequence = frame_labels[speaking].copy()
    changed = True
    while changed:
        changed = False
        runs = _labelruns(sequence)
        if len(runs) < 2:
            break
        shortest = min(range(len(runs)), key=lambda index: runs[index][1] - runs[index][0])
        start, end, _ = runs[shortest]
        if end - start < min_run:
            neighbour = runs[shortest - 1] if shortest > 0 else runs[shortest + 1]
            sequence[start:end] = neighbour[2]
            changed = True
    result = frame_labels.copy()
    result[speaking] = sequence
    return result


def _labelruns(sequence: npt.NDArray[np.int_]) -> list[tuple[int, int, int]]:
    """[start, end) and label of each run of one label."""
    boundaries = np.flatnonzero(np.diff(sequence)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [len(sequence)]))
    return [(int(s), int(e), int(sequence[s])) for s, e in zip(starts, ends, strict=True)]


def turns_of(frame_labels: npt.NDArray[np.int_], bridge: int) -> list[Turn]:
    """Turns from per-frame labels (-1: nobody), a same-speaker pause under `bridge` frames
    joined into one turn."""
    turns: list[Turn] = []
    for label in sorted(set(frame_labels.tolist()) - {-1}):
        for start, end in runs(frame_labels == label):
            turns.append(Turn(start * FRAME_S, end * FRAME_S, str(label)))
    turns.sort(key=lambda turn: turn.start)
    merged: list[Turn] = []
    for turn in turns:
        if (
            merged
            and merged[-1].speaker == turn.speaker
            and turn.start - merged[-1].end < bridge * FRAME_S + 1e-9
        ):
            merged[-1] = Turn(merged[-1].start, turn.end, turn.speaker)
        else:
            merged.append(turn)
    return [Turn(round(float(t.start), 3), round(float(t.end), 3), t.speaker) for t in merged]
