"""What clients may ask for: engines, languages and model names."""

from __future__ import annotations

from enum import StrEnum


class EngineName(StrEnum):
    """Transcription engines a job can run on."""

    WHISPERX = "whisperx"
    TIMESTAMPED = "timestamped"


# Whisper's language codes (openai-whisper `whisper.tokenizer.LANGUAGES`, in its order); every
# engine here decodes with a Whisper tokenizer, so these are exactly the codes they accept.
WHISPER_LANGUAGES: tuple[str, ...] = (
    "en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "pl", "ca", "nl", "ar", "sv",
    "it", "id", "hi", "fi", "vi", "he", "uk", "el", "ms", "cs", "ro", "da", "hu", "ta", "no",
    "th", "ur", "hr", "bg", "lt", "la", "mi", "ml", "cy", "sk", "te", "fa", "lv", "bn", "sr",
    "az", "sl", "kn", "et", "mk", "br", "eu", "is", "hy", "ne", "mn", "bs", "kk", "sq", "sw",
    "gl", "mr", "pa", "si", "km", "sn", "yo", "so", "af", "oc", "ka", "be", "tg", "sd", "gu",
    "am", "yi", "lo", "uz", "fo", "ht", "ps", "tk", "nn", "mt", "sa", "lb", "my", "bo", "tl",
    "mg", "as", "tt", "haw", "ln", "ha", "ba", "jw", "su", "yue",
)  # fmt: skip

Language = StrEnum("Language", {code: code for code in WHISPER_LANGUAGES})  # type: ignore[misc]
Language.__doc__ = "Language codes the engines accept (ISO 639-1 where one exists)."

# Model names both engines resolve: faster-whisper (whisperx) through its CTranslate2 repos,
# openai-whisper (timestamped) through its checkpoints.
KNOWN_MODELS: tuple[str, ...] = (
    "tiny.en", "tiny", "base.en", "base", "small.en", "small", "medium.en", "medium",
    "large-v1", "large-v2", "large-v3", "large", "large-v3-turbo", "turbo",
)  # fmt: skip


def is_english_only(model: str) -> bool:
    """Whether a Whisper model was trained on English alone (the `.en` variants)."""
    return model.endswith(".en")
