"""The API's choices stay in sync with the worker's registry and the engines' own lists."""

from __future__ import annotations

import subprocess
import sys

import pytest

from common.catalog import KNOWN_MODELS, WHISPER_LANGUAGES, EngineName
from tests.audio import REPO_ROOT
from worker.engines import ENGINES, UnknownEngineError, resolve_engine


def test_registry_matches_the_engines_the_api_accepts() -> None:
    assert set(ENGINES) == {engine.value for engine in EngineName}


def test_registry_entries_resolve_to_classes() -> None:
    for name in ENGINES:
        factory = resolve_engine(name)
        assert callable(factory)
        assert callable(getattr(factory, "transcribe", None))


def test_unknown_engine_names_the_known_ones() -> None:
    with pytest.raises(UnknownEngineError, match="whisperx"):
        resolve_engine("nope")


def test_languages_are_whispers() -> None:
    from whisper.tokenizer import LANGUAGES

    assert list(WHISPER_LANGUAGES) == list(LANGUAGES)


def test_known_models_load_by_name_in_both_libraries() -> None:
    from faster_whisper.utils import available_models
    from whisper import available_models as openai_models

    faster = set(available_models())
    for name in KNOWN_MODELS:
        assert name in openai_models(), name
        assert name in faster, name


def test_importing_the_api_loads_no_engine_library() -> None:
    probe = (
        "import sys, api.main; "
        "heavy = {'torch', 'whisperx', 'whisper', 'whisper_timestamped', 'faster_whisper', "
        "'ctranslate2', 'worker'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
