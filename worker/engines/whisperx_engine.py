"""The whisperx adapter: batched faster-whisper with pyannote VAD, then wav2vec2 word alignment."""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.catalog import is_english_only
from common.contract import TranscribeOptions
from common.transcript import Segment, Timings, Transcript
from worker.engines import base
from worker.engines.mapping import RawWord, build_segment, decoding_of, join_text
from worker.models import BUNDLED_MODEL, bundled_model_dir

log = logging.getLogger(__name__)

CHUNK_S = 30.0
"""Whisper's window: with VAD off, the audio is decoded in consecutive windows of this length."""


def fixed_windows(duration: float) -> list[dict[str, Any]]:
    """With VAD off: consecutive CHUNK_S windows over the whole audio, as whisperx's chunks."""
    windows: list[dict[str, Any]] = []
    start = 0.0
    while start < duration:
        end = min(start + CHUNK_S, duration)
        windows.append({"start": start, "end": end, "segments": [(start, end)]})
        start = end
    return windows


def precomputed_chunks(chunks: list[dict[str, Any]]) -> Any:
    """A stand-in for whisperx's VAD model that returns `chunks`, already merged.

    `FasterWhisperPipeline.transcribe` always runs its VAD and accepts any `Vad` subclass in
    its place: it calls `preprocess_audio`, then the model, then `merge_chunks` on what the model
    returned. Handing it a few chunks at a time drives the pipeline in steps.
    """
    from whisperx.vads import Vad

    class PrecomputedChunks(Vad):  # type: ignore[misc]
        def __init__(self) -> None:  # Vad's own only validates a VAD onset
            pass

        @staticmethod
        def preprocess_audio(audio: base.Audio) -> base.Audio:
            return audio

        def __call__(self, inputs: dict[str, Any]) -> list[dict[str, Any]]:
            del inputs
            return chunks

        @staticmethod
        def merge_chunks(
            segments: list[dict[str, Any]],
            chunk_size: float,
            onset: float = 0.5,
            offset: float | None = None,
        ) -> list[dict[str, Any]]:
            del chunk_size, onset, offset
            return segments

    return PrecomputedChunks()


FIRST_CHUNK_S = 10.0
"""The first chunk's longest span, seconds: a longer first chunk is cut in two, so the first
words reach the client after a short decode instead of a whole 30 s chunk's (the first of a
60 s file's two chunks holds half its speech)."""


STREAMED_FROM_S = 30.0
"""Audio this long or longer, in fewer chunks than STEPS_AT_LEAST, has its first chunk cut
(FIRST_CHUNK_S); shorter audio is decoded exactly as whisperx's one call would."""


def split_first_chunk(chunks: list[dict[str, Any]], cut: float) -> list[dict[str, Any]]:
    """The first chunk in two at `cut` (where the VAD, merging up to FIRST_CHUNK_S, ends its
    first chunk: the quietest point it found), when `cut` falls inside it; else as they are."""
    if not chunks or not chunks[0]["start"] < cut < chunks[0]["end"]:
        return chunks
    start, end = chunks[0]["start"], chunks[0]["end"]
    return [
        {"start": start, "end": cut, "segments": [(start, cut)]},
        {"start": cut, "end": end, "segments": [(cut, end)]},
        *chunks[1:],
    ]


STEPS_AT_LEAST = 4
"""Chunks are decoded in groups small enough for this many steps, so that a short job streams
its segments too; never more than the batch size per group."""


def chunk_groups(chunks: list[dict[str, Any]], batch_size: int) -> list[list[dict[str, Any]]]:
    """The chunks in consecutive groups of `max(1, min(batch_size, ceil(n / STEPS_AT_LEAST)))`;
    one empty group when there is no speech (the pipeline still detects the language)."""
    if not chunks:
        return [[]]
    size = max(1, min(batch_size, math.ceil(len(chunks) / STEPS_AT_LEAST)))
    return [chunks[index : index + size] for index in range(0, len(chunks), size)]


def _to_segment(
    item: dict[str, Any], previous: Segment | None, duration: float, aligned: bool
) -> Segment:
    """One of whisperx's segments as the project's, numbered and clamped after `previous`
    (words only when aligned: unaligned segments carry none)."""
    words = [
        RawWord(
            text=str(word.get("word", "")),
            start=word.get("start"),
            end=word.get("end"),
            probability=word.get("score"),
        )
        for word in (item.get("words") or [] if aligned else [])
    ]
    return build_segment(
        0 if previous is None else previous.id + 1,
        float(item.get("start", 0.0)),
        float(item.get("end", 0.0)),
        str(item.get("text", "")),
        words,
        duration,
        0.0 if previous is None else previous.start,
        decoding_of(item),
    )


def group_progress(
    progress: base.ProgressCallback, done: int, size: int, total: int
) -> Callable[[float], None]:
    """The pipeline's percent of one call over `size` chunks, as the percent of all `total`
    chunks when `done` were decoded before the call."""

    def report(percent: float) -> None:
        progress("transcribing", 100.0 * (done + size * float(percent) / 100.0) / max(total, 1))

    return report


def _source(spec: base.ModelSpec) -> str:
    """What faster-whisper loads: the catalogue's directory or hub id, the bundled directory for
    tiny.en, else the name (downloaded into the model cache)."""
    if spec.source is not None and base.is_local_source(spec.source):
        directory = Path(spec.source).expanduser()
        if not directory.is_dir():
            raise base.ModelLoadError(
                f"whisperx could not load model {spec.model!r}: its catalogue directory "
                f"{spec.source} does not exist"
            )
        return str(directory)
    if spec.source is not None:
        return spec.source
    bundled = bundled_model_dir() if spec.model == BUNDLED_MODEL else None
    return str(bundled) if bundled is not None else spec.model


class WhisperXEngine:
    """One whisperx pipeline on one device, plus the alignment models it has loaded so far."""

    def __init__(self, spec: base.ModelSpec, context: base.LoadContext) -> None:
        """Load the model: the bundled directory for tiny.en, else the name via the model cache."""
        import whisperx  # heavy: imported only where whisperx runs

        self._whisperx = whisperx
        self._spec = spec
        self._context = context
        self._english_only = spec.english_only or is_english_only(spec.model)
        source = _source(spec)
        try:
            self._pipeline = whisperx.load_model(
                source,
                device=spec.device,
                compute_type=spec.compute_type,
                language="en" if self._english_only else None,
                vad_method="pyannote",
                download_root=str(Path(context.model_cache_dir) / "faster-whisper"),
                local_files_only=False,
                threads=context.cpu_threads or 4,
            )
        except Exception as error:  # any library failure means the model is unusable
            raise base.ModelLoadError(
                f"whisperx could not load model {spec.model!r}: {type(error).__name__}: {error}"
            ) from error
        # A model trained on English alone under a name that does not say so (a catalogue entry).
        self._english_only |= not self._pipeline.model.model.is_multilingual
        self._aligners: dict[str, tuple[Any, dict[str, Any]] | str] = {}
        # Per-job options are set on the shared pipeline for the call: one call at a time.
        self._lock = threading.Lock()

    def _aligner(self, language: str) -> tuple[Any, dict[str, Any]] | str:
        """The alignment model for a language, or why there is none (remembered either way)."""
        if language not in self._aligners:
            try:
                self._aligners[language] = self._whisperx.load_align_model(
                    language_code=language,
                    device=self._spec.device,
                    model_dir=str(Path(self._context.model_cache_dir) / "alignment"),
                )
            except Exception as error:  # no aligner: fall back to segment timings
                log.warning("no alignment model for %r: %s", language, error)
                self._aligners[language] = f"{type(error).__name__}: {error}"
        return self._aligners[language]

    def _speech_chunks(self, audio: base.Audio, vad: bool) -> list[dict[str, Any]]:
        """The chunks the pipeline decodes: its VAD's, merged up to CHUNK_S, exactly as
        `FasterWhisperPipeline.transcribe` computes them; fixed windows with VAD off."""
        if not vad:
            return fixed_windows(len(audio) / base.SAMPLE_RATE)
        from whisperx.audio import SAMPLE_RATE
        from whisperx.vads import Pyannote, Vad

        pipeline = self._pipeline
        model = pipeline.vad_model
        # A VAD model assigned by hand is treated as pyannote's, as the pipeline does.
        kind = model if isinstance(model, Vad) else Pyannote
        speech = model({"waveform": kind.preprocess_audio(audio), "sample_rate": SAMPLE_RATE})
        chunks: list[dict[str, Any]] = kind.merge_chunks(
            speech,
            CHUNK_S,
            onset=pipeline._vad_params["vad_onset"],
            offset=pipeline._vad_params["vad_offset"],
        )
        short_job = len(audio) / base.SAMPLE_RATE < STREAMED_FROM_S
        if short_job or len(chunks) >= STEPS_AT_LEAST or not chunks:
            return chunks  # short: no one waits; many chunks: the first is a small share
        if chunks[0]["end"] - chunks[0]["start"] <= FIRST_CHUNK_S:
            return chunks
        # The VAD's scores merged again, up to FIRST_CHUNK_S: where that ends its first chunk
        # is where a long first chunk is cut.
        short: list[dict[str, Any]] = kind.merge_chunks(
            speech,
            FIRST_CHUNK_S,
            onset=pipeline._vad_params["vad_onset"],
            offset=pipeline._vad_params["vad_offset"],
        )
        return split_first_chunk(chunks, short[0]["end"]) if short else chunks

    def _run_pipeline(
        self,
        audio: base.Audio,
        language: str | None,
        options: TranscribeOptions,
        progress: base.ProgressCallback,
        on_segments: Callable[[list[dict[str, Any]]], None],
        notes: list[str],
    ) -> dict[str, Any]:
        """The pipeline driven in steps: its VAD once, then one call per group of chunks
        (`chunk_groups`), each group's segments handed to `on_segments` as soon as it is
        decoded; the job's decoding options set for the calls and restored after.

        The first call detects the language (when not given) and later calls reuse it, so the
        result equals one call on the whole audio; progress counts chunks over all the groups.
        """
        pipeline = self._pipeline
        overrides: dict[str, Any] = {}
        if options.beam_size is not None:
            overrides["beam_size"] = options.beam_size
        if options.initial_prompt:
            overrides["initial_prompt"] = options.initial_prompt
        if options.hotwords:
            overrides["hotwords"] = options.hotwords
        if options.temperature:
            notes.append("temperature is ignored: whisperx's batched decoding does not sample")
        if not options.vad:
            notes.append(f"VAD off: decoded in consecutive {CHUNK_S:.0f} s windows")
        segments: list[dict[str, Any]] = []
        with self._lock:
            saved_options, saved_vad = pipeline.options, pipeline.vad_model
            try:
                pipeline.options = dataclasses.replace(saved_options, **overrides)
                chunks = self._speech_chunks(audio, options.vad)
                done = 0
                for group in chunk_groups(chunks, self._context.batch_size):
                    progress("transcribing", 100.0 * done / max(len(chunks), 1))
                    pipeline.vad_model = precomputed_chunks(group)
                    raw = pipeline.transcribe(
                        audio,
                        batch_size=self._context.batch_size,
                        language=language,
                        task=options.task,
                        progress_callback=group_progress(progress, done, len(group), len(chunks)),
                    )
                    language = language or raw.get("language")
                    decoded = list(raw.get("segments") or [])
                    segments += decoded
                    on_segments(decoded)
                    done += len(group)
            finally:
                pipeline.options, pipeline.vad_model = saved_options, saved_vad
                if pipeline.preset_language is None:
                    # whisperx resets a detected language's tokenizer only on success; a stopped
                    # job would leave it for the next one.
                    pipeline.tokenizer = None
        return {"segments": segments, "language": language}

    def transcribe(
        self,
        audio: base.Audio,
        options: TranscribeOptions,
        progress: base.ProgressCallback,
        on_segment: base.SegmentCallback = base.discard_segment,
    ) -> Transcript:
        """Transcribe with VAD-cut batches, handing over each group's segments as it is
        decoded, then align words when an aligner is available.

        Without alignment the transcript's segments are the ones handed over; alignment
        re-times them and may split them, so aligned segments can differ from the live ones.
        """
        duration = len(audio) / base.SAMPLE_RATE
        notes: list[str] = []
        progress("transcribing", 0.0)
        started = time.perf_counter()
        language = "en" if self._english_only else options.language
        live: list[Segment] = []

        def hand_over(decoded: list[dict[str, Any]]) -> None:
            for item in decoded:
                segment = _to_segment(item, live[-1] if live else None, duration, aligned=False)
                live.append(segment)
                on_segment(segment)

        raw = self._run_pipeline(audio, language, options, progress, hand_over, notes)
        transcribe_s = time.perf_counter() - started
        detected = str(raw.get("language") or language or "en")
        segments_raw: list[dict[str, Any]] = list(raw.get("segments") or [])

        align_s = 0.0
        segments = live
        if not options.word_timestamps:
            notes.append("word timings not requested (word_timestamps=false)")
        elif options.task != "transcribe":
            notes.append("word timings are not aligned for translations")
        elif not self._context.align:
            notes.append("word timings off: WHISPERX_ALIGN is false on this server")
        elif segments_raw:
            progress("aligning", 0.0)
            started = time.perf_counter()
            aligner = self._aligner(detected)
            if isinstance(aligner, str):
                notes.append(
                    f"word timings unavailable: no alignment model for language {detected!r} "
                    f"could be loaded ({aligner[:200]}); segment timings only"
                )
            else:
                model, metadata = aligner
                result = self._whisperx.align(
                    segments_raw,
                    model,
                    metadata,
                    audio,
                    self._spec.device,
                    return_char_alignments=False,
                    progress_callback=lambda percent: progress("aligning", float(percent)),
                )
                segments = []
                for item in result.get("segments") or []:
                    previous = segments[-1] if segments else None
                    segments.append(_to_segment(item, previous, duration, aligned=True))
            align_s = time.perf_counter() - started
        progress("done", 100.0)
        return Transcript(
            engine="whisperx",
            model=self._spec.model,
            language=detected,
            duration=duration,
            text=join_text(segments),
            segments=segments,
            timings=Timings(transcribe_s=transcribe_s, align_s=align_s),
            notes=notes,
        )
