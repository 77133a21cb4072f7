"""The catalogue against the engines' own libraries: registry classes, languages, model names."""

from __future__ import annotations

import pytest
from faster_whisper.utils import available_models
from whisper import available_models as openai_models
from whisper.tokenizer import LANGUAGES

from common.catalog import KNOWN_MODELS, WHISPER_LANGUAGES
from worker.engines import ENGINES, resolve_engine

pytestmark = pytest.mark.integration


def test_registry_entries_resolve_to_classes() -> None:
    for name in ENGINES:
        factory = resolve_engine(name)
        assert callable(factory)
        assert callable(getattr(factory, "transcribe", None))


def test_languages_are_whispers() -> None:
    assert list(WHISPER_LANGUAGES) == list(LANGUAGES)


def test_known_models_load_by_name_in_both_libraries() -> None:
    faster = set(available_models())
    for name in KNOWN_MODELS:
        assert name in openai_models(), name
        assert name in faster, name
