"""Model ids of the OpenAI routes."""

from __future__ import annotations

import pytest

from api.openai.models import model_ids, resolve
from common.catalog import EngineName
from config import Settings


def test_ids_are_whisper_1_then_engine_slash_model_for_each_offered_model() -> None:
    settings = Settings(allowed_models=["tiny.en", "base"])
    assert model_ids(settings) == [
        "whisper-1",
        "whisperx/tiny.en",
        "whisperx/base",
        "timestamped/tiny.en",
        "timestamped/base",
    ]


def test_whisper_1_and_bare_names_run_on_the_default_engine() -> None:
    settings = Settings(default_engine=EngineName.TIMESTAMPED, allowed_models=["tiny.en", "base"])
    assert resolve("whisper-1", settings).id == "timestamped/tiny.en"
    assert resolve("base", settings).id == "timestamped/base"
    assert resolve("base", settings, EngineName.WHISPERX).id == "whisperx/base"
    assert resolve("whisperx/base", settings).id == "whisperx/base"


@pytest.mark.parametrize("model_id", ["small", "whisperx/small", "nemo/tiny.en", "whisperx/", ""])
def test_ids_not_offered_are_unknown(model_id: str) -> None:
    with pytest.raises(LookupError):
        resolve(model_id, Settings(allowed_models=["tiny.en"]))


def test_an_engine_field_that_contradicts_the_id_is_refused() -> None:
    with pytest.raises(ValueError, match="runs on 'timestamped'"):
        resolve("timestamped/tiny.en", Settings(), EngineName.WHISPERX)
