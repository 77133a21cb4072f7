"""The whisperx adapter: batched faster-whisper with pyannote VAD, then wav2vec2 word alignment."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
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


def _fixed_windows() -> Any:
    """A stand-in for whisperx's VAD model that keeps everything: consecutive CHUNK_S windows.

    whisperx always runs its VAD; it accepts any `Vad` subclass in its place, calling
    `preprocess_audio`, then the model, then `merge_chunks` on what the model returned.
    """
    from whisperx.vads import Vad

    class FixedWindows(Vad):  # type: ignore[misc]
        def __init__(self) -> None:  # Vad's own only validates a VAD onset
            pass

        @staticmethod
        def preprocess_audio(audio: base.Audio) -> base.Audio:
            return audio

        def __call__(self, inputs: dict[str, Any]) -> float:
            return len(inputs["waveform"]) / base.SAMPLE_RATE

        @staticmethod
        def merge_chunks(
            duration: float, chunk_size: float, onset: float = 0.5, offset: float | None = None
        ) -> list[dict[str, Any]]:
            del onset, offset
            windows: list[dict[str, Any]] = []
            start = 0.0
            while start < duration:
                end = min(start + min(chunk_size, CHUNK_S), duration)
                windows.append({"start": start, "end": end, "segments": [(start, end)]})
                start = end
            return windows

    return FixedWindows()


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
        self._no_vad = _fixed_windows()
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

    def _run_pipeline(
        self,
        audio: base.Audio,
        language: str | None,
        options: TranscribeOptions,
        progress: base.ProgressCallback,
        notes: list[str],
    ) -> dict[str, Any]:
        """One pipeline call with the job's decoding options and VAD choice, restored after."""
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
        with self._lock:
            saved_options, saved_vad = pipeline.options, pipeline.vad_model
            try:
                pipeline.options = dataclasses.replace(saved_options, **overrides)
                if not options.vad:
                    pipeline.vad_model = self._no_vad
                raw: dict[str, Any] = pipeline.transcribe(
                    audio,
                    batch_size=self._context.batch_size,
                    language=language,
                    task=options.task,
                    progress_callback=lambda percent: progress("transcribing", float(percent)),
                )
            finally:
                pipeline.options, pipeline.vad_model = saved_options, saved_vad
                if pipeline.preset_language is None:
                    # whisperx resets a detected language's tokenizer only on success; a stopped
                    # job would leave it for the next one.
                    pipeline.tokenizer = None
        return raw

    def transcribe(
        self, audio: base.Audio, options: TranscribeOptions, progress: base.ProgressCallback
    ) -> Transcript:
        """Transcribe with VAD-cut batches, then align words when an aligner is available."""
        duration = len(audio) / base.SAMPLE_RATE
        notes: list[str] = []
        progress("transcribing", 0.0)
        started = time.perf_counter()
        language = "en" if self._english_only else options.language
        raw = self._run_pipeline(audio, language, options, progress, notes)
        transcribe_s = time.perf_counter() - started
        detected = str(raw.get("language") or language or "en")
        segments_raw: list[dict[str, Any]] = list(raw.get("segments") or [])

        align_s = 0.0
        aligned = False
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
                segments_raw = list(result.get("segments") or [])
                aligned = True
            align_s = time.perf_counter() - started

        segments: list[Segment] = []
        previous_end = 0.0
        for index, item in enumerate(segments_raw):
            words = [
                RawWord(
                    text=str(word.get("word", "")),
                    start=word.get("start"),
                    end=word.get("end"),
                    probability=word.get("score"),
                )
                for word in (item.get("words") or [] if aligned else [])
            ]
            segment = build_segment(
                index,
                float(item.get("start", 0.0)),
                float(item.get("end", 0.0)),
                str(item.get("text", "")),
                words,
                duration,
                previous_end,
                decoding_of(item),
            )
            previous_end = segment.start
            segments.append(segment)
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
