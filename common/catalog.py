"""What clients may ask for: engines, languages, model names and the operator's catalogue."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class EngineName(StrEnum):
    """Transcription engines a job can run on."""

    WHISPERX = "whisperx"
    TIMESTAMPED = "timestamped"


# Whisper's languages (openai-whisper `whisper.tokenizer.LANGUAGES`, in its order): code → the
# lower-case name OpenAI's API answers with; every engine here decodes with a Whisper tokenizer,
# so these are exactly the codes they accept.
LANGUAGE_NAMES: dict[str, str] = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian",
    "ko": "korean", "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish",
    "pl": "polish", "ca": "catalan", "nl": "dutch", "ar": "arabic", "sv": "swedish",
    "it": "italian", "id": "indonesian", "hi": "hindi", "fi": "finnish", "vi": "vietnamese",
    "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay", "cs": "czech",
    "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian",
    "la": "latin", "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak", "te": "telugu",
    "fa": "persian", "lv": "latvian", "bn": "bengali", "sr": "serbian", "az": "azerbaijani",
    "sl": "slovenian", "kn": "kannada", "et": "estonian", "mk": "macedonian", "br": "breton",
    "eu": "basque", "is": "icelandic", "hy": "armenian", "ne": "nepali", "mn": "mongolian",
    "bs": "bosnian", "kk": "kazakh", "sq": "albanian", "sw": "swahili", "gl": "galician",
    "mr": "marathi", "pa": "punjabi", "si": "sinhala", "km": "khmer", "sn": "shona",
    "yo": "yoruba", "so": "somali", "af": "afrikaans", "oc": "occitan", "ka": "georgian",
    "be": "belarusian", "tg": "tajik", "sd": "sindhi", "gu": "gujarati", "am": "amharic",
    "yi": "yiddish", "lo": "lao", "uz": "uzbek", "fo": "faroese", "ht": "haitian creole",
    "ps": "pashto", "tk": "turkmen", "nn": "nynorsk", "mt": "maltese", "sa": "sanskrit",
    "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan", "tl": "tagalog", "mg": "malagasy",
    "as": "assamese", "tt": "tatar", "haw": "hawaiian", "ln": "lingala", "ha": "hausa",
    "ba": "bashkir", "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}  # fmt: skip
WHISPER_LANGUAGES: tuple[str, ...] = tuple(LANGUAGE_NAMES)

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


CATALOGUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
"""A name the operator may give a model in MODELS: letters, digits, `.`, `_`, `-`; no paths."""


@dataclass(frozen=True, order=True)
class Route:
    """One engine with one of its models: what a job needs and what a worker serves.

    Written `engine/model` (`whisperx/large-v3`), as the OpenAI routes' model ids are.
    """

    engine: EngineName
    model: str

    @property
    def id(self) -> str:
        """`engine/model`."""
        return f"{self.engine.value}/{self.model}"

    @classmethod
    def parse(cls, text: str) -> Route:
        """The route `engine/model` names; ValueError for anything else."""
        engine, slash, model = text.strip().partition("/")
        if not slash or not model or engine not in {member.value for member in EngineName}:
            engines = ", ".join(member.value for member in EngineName)
            raise ValueError(f"{text.strip()!r} is not engine/model (engines: {engines})")
        return cls(EngineName(engine), model)

    def __str__(self) -> str:
        return self.id


class CatalogEntry(BaseModel):
    """Where one named model comes from, per engine (an entry of MODELS).

    A source is a local path (a CTranslate2 directory; for `timestamped` also an openai-whisper
    `.pt` checkpoint) or a hub id (`org/name` on Hugging Face for whisperx, fetched into
    MODEL_CACHE_DIR; an openai-whisper name or a Hugging Face CTranslate2 repo for timestamped).
    An engine without a source does not offer the name. A bare string is the same source for
    both engines.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    whisperx: str | None = Field(default=None, min_length=1, description="whisperx's source.")
    timestamped: str | None = Field(
        default=None, min_length=1, description="whisper-timestamped's source."
    )
    english_only: bool | None = Field(
        default=None,
        description="Trained on English alone; by default, whether the name ends in `.en`.",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_source_for_both(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"whisperx": data, "timestamped": data}
        return data

    @model_validator(mode="after")
    def _some_source(self) -> CatalogEntry:
        if self.whisperx is None and self.timestamped is None:
            raise ValueError("a catalogue entry needs a source for whisperx or timestamped")
        return self

    def source(self, engine: EngineName) -> str | None:
        """Where `engine` loads this model from; None when the engine does not offer it."""
        return self.whisperx if engine == EngineName.WHISPERX else self.timestamped


class Catalogue:
    """The models this server offers: Whisper's known names and the operator's MODELS,
    narrowed by ALLOWED_MODELS; per engine, since a MODELS entry may name one engine only."""

    def __init__(self, entries: Mapping[str, CatalogEntry], allowed: Sequence[str] = ()) -> None:
        self._entries = dict(entries)
        base = [*KNOWN_MODELS, *(name for name in self._entries if name not in KNOWN_MODELS)]
        if allowed:
            wanted = set(allowed)
            self._models = [name for name in base if name in wanted] + sorted(
                wanted.difference(base)
            )
        else:
            self._models = base

    def models(self) -> list[str]:
        """Every offered name: the known ones first, then MODELS' in their order."""
        return list(self._models)

    def offers(self, route: Route) -> bool:
        """Whether a job may ask for this engine and model."""
        if route.model not in self._models:
            return False
        entry = self._entries.get(route.model)
        return entry is None or entry.source(route.engine) is not None

    def engines_of(self, model: str) -> list[EngineName]:
        """The engines that offer `model`, in EngineName's order."""
        return [engine for engine in EngineName if self.offers(Route(engine, model))]

    def routes(self) -> list[Route]:
        """Every offered engine/model, engine by engine."""
        return [
            Route(engine, name)
            for engine in EngineName
            for name in self._models
            if self.offers(Route(engine, name))
        ]

    def source(self, route: Route) -> str | None:
        """The operator's source for the route, or None where the engine resolves the name."""
        entry = self._entries.get(route.model)
        return None if entry is None else entry.source(route.engine)

    def english_only(self, model: str) -> bool:
        """Whether `model` transcribes English alone: its entry says so, else its name does."""
        entry = self._entries.get(model)
        if entry is not None and entry.english_only is not None:
            return entry.english_only
        return is_english_only(model)
