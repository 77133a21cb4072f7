"""Word timings for whisperx: where a wav2vec2 aligner can be had offline, and Whisper's own
cross-attention timings (faster-whisper's) for the text whisperx's batched pipeline decoded."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.engines.mapping import RawWord

ALIGNMENT_SUBDIR = "alignment"
"""Folder under the model cache for wav2vec2 alignment models (torchaudio's and the hub's)."""

NLTK_SUBDIR = "nltk_data"
"""Folder under the model cache searched for nltk data (whisperx's sentence splitter, punkt_tab)
besides nltk's own places (NLTK_DATA, ~/nltk_data, /usr/share/nltk_data, ...)."""

MAX_FRAMES = 3000
"""Mel frames in Whisper's 30 s window: no chunk aligns over more."""


def punkt_language(language: str) -> str:
    """The punkt_tab model whisperx's aligner splits a language's sentences with."""
    from whisperx.utils import PUNKT_LANGUAGES

    return str(PUNKT_LANGUAGES.get(language, "english"))


def missing_punkt(language: str, model_cache_dir: Path) -> str | None:
    """Why whisperx's aligner could not split `language`'s sentences offline, or None when
    nltk's punkt_tab for it is installed (whisperx would otherwise call nltk.download)."""
    import nltk

    extra = str(model_cache_dir / NLTK_SUBDIR)
    if extra not in nltk.data.path:
        nltk.data.path.append(extra)  # nltk's documented way to add a data folder
    resource = f"tokenizers/punkt_tab/{punkt_language(language)}/"
    try:
        nltk.data.find(resource)
    except LookupError:
        return f"nltk's punkt_tab is not installed ({resource} in none of nltk's data folders)"
    return None


def missing_align_model(language: str, model_cache_dir: Path) -> str | None:
    """Why no wav2vec2 alignment model for `language` is in the model cache, or None when
    whisperx's default one is there (so loading it touches no network).

    torchaudio's bundles (en, fr, de, es, it) are one `.pth` file under `alignment/`, as
    torch.hub names it; the hub's are a Hugging Face cache entry there.
    """
    import torchaudio
    from huggingface_hub import try_to_load_from_cache
    from whisperx.alignment import DEFAULT_ALIGN_MODELS_HF, DEFAULT_ALIGN_MODELS_TORCH

    folder = model_cache_dir / ALIGNMENT_SUBDIR
    if language in DEFAULT_ALIGN_MODELS_TORCH:
        bundle = torchaudio.pipelines.__dict__[DEFAULT_ALIGN_MODELS_TORCH[language]]
        # torch.hub caches a URL under its last path part, the bundle's `_path`.
        checkpoint = folder / Path(bundle._path).name
        return None if checkpoint.is_file() else f"{checkpoint} is missing"
    if language in DEFAULT_ALIGN_MODELS_HF:
        repo = DEFAULT_ALIGN_MODELS_HF[language]
        cached = try_to_load_from_cache(repo, "config.json", cache_dir=str(folder))
        return None if isinstance(cached, str) else f"{repo} is not in {folder}"
    return f"whisperx has no default alignment model for {language!r}"


def wav2vec2_unavailable(language: str, model_cache_dir: Path) -> str | None:
    """Why whisperx cannot align `language` with wav2vec2 offline, or None when it can."""
    return missing_align_model(language, model_cache_dir) or missing_punkt(
        language, model_cache_dir
    )


@dataclass(frozen=True)
class DecodedChunk:
    """One chunk whisperx decoded: its span of the audio (seconds) and its text."""

    start: float
    end: float
    text: str


def cross_attention_words(
    model: Any,
    tokenizer: Any,
    encoder_output: Any,
    chunks: Sequence[DecodedChunk],
    punctuations: tuple[str, str],
    last_speech_s: float,
) -> tuple[list[list[RawWord]], float]:
    """Each chunk's words timed by Whisper's cross-attention (faster-whisper's alignment heads
    and DTW, `WhisperModel.add_word_timestamps`), in seconds of the job's audio, and the end of
    the last speech found (which the next call takes as `last_speech_s`).

    `model` is the faster-whisper `WhisperModel` that decoded the chunks, `tokenizer` its
    tokenizer for the job's language and task, `encoder_output` the encoder's output for the
    chunks (one batch item each, in order); `punctuations` are (prepended, appended) marks that
    join the word beside them. The text is tokenized again: Whisper's BPE gives back the tokens
    it decoded. Chunks without text get no words.
    """
    fps = float(model.frames_per_second)
    segments = [
        [
            {
                "tokens": tokenizer.encode(chunk.text) if chunk.text.strip() else [],
                # faster-whisper offsets words by seek / frames per second: a fraction is exact.
                "seek": chunk.start * fps,
                "start": chunk.start,
                "end": chunk.end,
            }
        ]
        for chunk in chunks
    ]
    frames = [min(MAX_FRAMES, math.ceil((chunk.end - chunk.start) * fps)) for chunk in chunks]
    if not any(segment[0]["tokens"] for segment in segments):
        return [[] for _ in chunks], last_speech_s
    last = model.add_word_timestamps(
        segments, tokenizer, encoder_output, frames, *punctuations, last_speech_s
    )
    words = [
        [
            RawWord(
                text=str(word["word"]),
                start=float(word["start"]),
                end=float(word["end"]),
                probability=float(word["probability"]),
            )
            for word in segment[0].get("words") or []
        ]
        for segment in segments
    ]
    return words, float(last if last is not None else last_speech_s)
