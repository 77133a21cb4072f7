"""The whisperx adapter: batched faster-whisper with pyannote VAD; words timed by Whisper's
cross-attention as each chunk is decoded, re-timed by wav2vec2 alignment where that is at hand."""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common.catalog import is_english_only
from common.contract import TranscribeOptions
from common.transcript import Segment, Timings, Transcript, WordTimingSource
from worker.engines import base
from worker.engines.mapping import RawWord, build_segment, decoding_of, join_text, time_floor
from worker.engines.word_timing import (
    ALIGNMENT_SUBDIR,
    DecodedChunk,
    cross_attention_words,
    wav2vec2_unavailable,
)
from worker.models import PackagedModelError, packaged_model_dir

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
    item: dict[str, Any], previous: Segment | None, duration: float, words: list[RawWord]
) -> Segment:
    """One of whisperx's segments as the project's, numbered and clamped after `previous`."""
    return build_segment(
        0 if previous is None else previous.id + 1,
        float(item.get("start", 0.0)),
        float(item.get("end", 0.0)),
        str(item.get("text", "")),
        words,
        duration,
        time_floor(previous),
        decoding_of(item),
    )


def _aligned_words(item: dict[str, Any]) -> list[RawWord]:
    """The words of a segment that whisperx.align returned (times may be missing)."""
    return [
        RawWord(
            text=str(word.get("word", "")),
            start=word.get("start"),
            end=word.get("end"),
            probability=word.get("score"),
        )
        for word in item.get("words") or []
    ]


@contextmanager
def _kept_encodings(model: Any) -> Iterator[list[Any]]:
    """Every encoder output `model` (faster-whisper's WhisperModel) computes inside the block,
    in order: the batch of chunks whisperx decodes is encoded once, and the cross-attention
    word timings need that same output (encoding again would double the encoder's cost)."""
    kept: list[Any] = []
    encode = model.encode

    def keeping(features: Any) -> Any:
        output = encode(features)
        kept.append(output)
        return output

    model.encode = keeping
    try:
        yield kept
    finally:
        del model.encode  # the class's method again


def group_progress(
    progress: base.ProgressCallback, done: int, size: int, total: int
) -> Callable[[float], None]:
    """The pipeline's percent of one call over `size` chunks, as the percent of all `total`
    chunks when `done` were decoded before the call."""

    def report(percent: float) -> None:
        progress("transcribing", 100.0 * (done + size * float(percent) / 100.0) / max(total, 1))

    return report


def _source(spec: base.ModelSpec, model_cache_dir: Path) -> str:
    """What faster-whisper loads: the catalogue's directory or hub id, a packaged model's
    directory (tiny.en, base), else the name (downloaded into the model cache)."""
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
    try:
        packaged = packaged_model_dir(spec.model, model_cache_dir)
    except PackagedModelError as error:
        message = f"whisperx could not load model {spec.model!r}: {error}"
        raise base.ModelLoadError(message) from error
    return str(packaged) if packaged is not None else spec.model


class WhisperXEngine:
    """One whisperx pipeline on one device, plus the alignment models it has loaded so far."""

    def __init__(self, spec: base.ModelSpec, context: base.LoadContext) -> None:
        """Load the model: a packaged one's directory (tiny.en, base), else the name via the
        model cache."""
        import whisperx  # heavy: imported only where whisperx runs

        self._whisperx = whisperx
        self._spec = spec
        self._context = context
        self._english_only = spec.english_only or is_english_only(spec.model)
        source = _source(spec, Path(context.model_cache_dir))
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
        """The wav2vec2 alignment model for a language, from the model cache only, or why it
        could not be loaded (remembered either way)."""
        if language not in self._aligners:
            try:
                self._aligners[language] = self._whisperx.load_align_model(
                    language_code=language,
                    device=self._spec.device,
                    model_dir=str(Path(self._context.model_cache_dir) / ALIGNMENT_SUBDIR),
                    model_cache_only=True,
                )
            except Exception as error:  # a damaged cache entry: cross-attention words stay
                log.warning("no alignment model for %r: %s", language, error)
                self._aligners[language] = f"{type(error).__name__}: {error}"
        return self._aligners[language]

    def _wav2vec2_refusal(self, language: str, options: TranscribeOptions) -> str | None:
        """Why this job's words are not re-timed by wav2vec2, or None when they can be."""
        if options.task != "transcribe":
            return "wav2vec2 aligns transcriptions, not translations"
        if not self._context.align:
            return "WHISPERX_ALIGN is false on this server"
        missing = wav2vec2_unavailable(language, Path(self._context.model_cache_dir))
        if missing is not None:
            return f"no wav2vec2 alignment for {language!r} offline: {missing}"
        return None

    def _detect_language(self, audio: base.Audio) -> tuple[str, float | None]:
        """The language of the audio's first 30 s and its probability, exactly as the pipeline
        detects it (which keeps the probability to itself); the pipeline then decodes in it."""
        from whisperx.audio import N_SAMPLES, log_mel_spectrogram

        model = self._pipeline.model
        head = audio[:N_SAMPLES]
        mel = log_mel_spectrogram(
            head,
            n_mels=model.feat_kwargs.get("feature_size") or 80,
            padding=N_SAMPLES - head.shape[0],
        )
        with self._lock:  # one call at a time on the shared model
            token, probability = model.model.detect_language(model.encode(mel))[0][0]
        language = str(token)[2:-2]  # "<|de|>"
        score = float(probability)
        return language, min(max(score, 0.0), 1.0) if math.isfinite(score) else None

    def _encode(self, audio: base.Audio, chunks: list[DecodedChunk]) -> Any:
        """The encoder's output for `chunks`, as whisperx's pipeline computes its features."""
        import numpy as np
        from whisperx.audio import N_SAMPLES, log_mel_spectrogram

        model = self._pipeline.model
        n_mels = model.feat_kwargs.get("feature_size") or 80
        features = []
        for chunk in chunks:
            piece = audio[int(chunk.start * base.SAMPLE_RATE) : int(chunk.end * base.SAMPLE_RATE)]
            mel = log_mel_spectrogram(piece, n_mels=n_mels, padding=N_SAMPLES - piece.shape[0])
            features.append(mel.numpy())
        return model.encode(np.stack(features))

    def _cross_attention(
        self,
        audio: base.Audio,
        decoded: list[dict[str, Any]],
        encodings: list[Any],
        language: str,
        task: str,
        last_speech_s: float,
    ) -> tuple[list[list[RawWord]], float]:
        """Words for one step's decoded segments (one per chunk), timed by Whisper's
        cross-attention on the step's own encoder output (encoded again only when the
        pipeline's is not the step's batch)."""
        from faster_whisper.tokenizer import Tokenizer

        model = self._pipeline.model
        chunks = [
            DecodedChunk(float(item["start"]), float(item["end"]), str(item.get("text", "")))
            for item in decoded
        ]
        if not chunks:
            return [], last_speech_s
        last = encodings[-1] if encodings else None
        encoded = last if last is not None and last.shape[0] == len(chunks) else None
        tokenizer = Tokenizer(
            model.hf_tokenizer, model.model.is_multilingual, task=task, language=language
        )
        options = self._pipeline.options
        return cross_attention_words(
            model,
            tokenizer,
            encoded if encoded is not None else self._encode(audio, chunks),
            chunks,
            (options.prepend_punctuations, options.append_punctuations),
            last_speech_s,
        )

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
        on_segments: Callable[[list[dict[str, Any]], list[list[RawWord]]], None],
        notes: list[str],
    ) -> dict[str, Any]:
        """The pipeline driven in steps: its VAD once, then one call per group of chunks
        (`chunk_groups`), each group's segments handed to `on_segments` as soon as it is
        decoded, with their words timed by cross-attention when the job wants words (else
        none); the job's decoding options set for the calls and restored after.

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
        last_speech_s = 0.0
        with self._lock:
            saved_options, saved_vad = pipeline.options, pipeline.vad_model
            try:
                pipeline.options = dataclasses.replace(saved_options, **overrides)
                chunks = self._speech_chunks(audio, options.vad)
                done = 0
                for group in chunk_groups(chunks, self._context.batch_size):
                    progress("transcribing", 100.0 * done / max(len(chunks), 1))
                    pipeline.vad_model = precomputed_chunks(group)
                    with _kept_encodings(pipeline.model) as encodings:
                        raw = pipeline.transcribe(
                            audio,
                            batch_size=self._context.batch_size,
                            language=language,
                            task=options.task,
                            progress_callback=group_progress(
                                progress, done, len(group), len(chunks)
                            ),
                        )
                    language = language or raw.get("language")
                    decoded = list(raw.get("segments") or [])
                    words: list[list[RawWord]] = [[] for _ in decoded]
                    if options.word_timestamps and decoded:
                        words, last_speech_s = self._cross_attention(
                            audio,
                            decoded,
                            encodings,
                            str(language or "en"),
                            options.task,
                            last_speech_s,
                        )
                    segments += decoded
                    on_segments(decoded, words)
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
        decoded (with words timed by Whisper's cross-attention, unless word_timestamps is
        false), then re-time the words by wav2vec2 alignment where its model and nltk's
        punkt_tab are in the model cache (see `word_timing`).

        Without wav2vec2 the transcript's segments are the ones handed over; alignment re-times
        them and may split them, so aligned segments can differ from the live ones.
        """
        duration = len(audio) / base.SAMPLE_RATE
        notes: list[str] = []
        progress("transcribing", 0.0)
        started = time.perf_counter()
        language = "en" if self._english_only else options.language
        probability: float | None = None
        if language is None:
            language, probability = self._detect_language(audio)
        live: list[Segment] = []

        def hand_over(decoded: list[dict[str, Any]], words: list[list[RawWord]]) -> None:
            for item, item_words in zip(decoded, words, strict=True):
                segment = _to_segment(item, live[-1] if live else None, duration, item_words)
                live.append(segment)
                on_segment(segment)

        raw = self._run_pipeline(audio, language, options, progress, hand_over, notes)
        transcribe_s = time.perf_counter() - started
        detected = str(raw.get("language") or language or "en")
        segments_raw: list[dict[str, Any]] = list(raw.get("segments") or [])

        align_s = 0.0
        segments = live
        source: WordTimingSource | None = None
        if not options.word_timestamps:
            notes.append("word timings not requested (word_timestamps=false)")
        elif any(segment.words for segment in live):
            source = "cross-attention"
            started = time.perf_counter()
            refusal = self._wav2vec2_refusal(detected, options)
            if refusal is None:
                progress("aligning", 0.0)
                refusal, aligned = self._wav2vec2(audio, segments_raw, detected, progress)
                if aligned is not None:
                    segments, source = aligned, "wav2vec2"
            align_s = time.perf_counter() - started
            notes.append(
                "word timings from wav2vec2 alignment"
                if refusal is None
                else f"word timings from Whisper's cross-attention; {refusal}"
            )
        progress("done", 100.0)
        return Transcript(
            engine="whisperx",
            model=self._spec.model,
            language=detected,
            language_probability=probability,
            duration=duration,
            text=join_text(segments),
            segments=segments,
            word_timing_source=source,
            timings=Timings(transcribe_s=transcribe_s, align_s=align_s),
            notes=notes,
        )

    def _wav2vec2(
        self,
        audio: base.Audio,
        segments_raw: list[dict[str, Any]],
        language: str,
        progress: base.ProgressCallback,
    ) -> tuple[str | None, list[Segment] | None]:
        """whisperx's wav2vec2 alignment of the decoded segments: (None, the re-timed segments),
        or (why not, None) when its model cannot be loaded or the alignment fails."""
        aligner = self._aligner(language)
        if isinstance(aligner, str):
            return f"the wav2vec2 model for {language!r} did not load ({aligner[:200]})", None
        model, metadata = aligner
        duration = len(audio) / base.SAMPLE_RATE
        try:
            result = self._whisperx.align(
                segments_raw,
                model,
                metadata,
                audio,
                self._spec.device,
                return_char_alignments=False,
                progress_callback=lambda percent: progress("aligning", float(percent)),
            )
        except Exception as error:  # the words keep their cross-attention times
            log.warning("wav2vec2 alignment failed for %r: %s", language, error)
            return f"wav2vec2 alignment failed ({type(error).__name__}: {error})"[:300], None
        segments: list[Segment] = []
        for item in result.get("segments") or []:
            previous = segments[-1] if segments else None
            segments.append(_to_segment(item, previous, duration, _aligned_words(item)))
        return None, segments
