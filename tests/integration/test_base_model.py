"""The packaged multilingual `base` model through both engines: German detected with its
probability and transcribed, and translated to English, with no network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.audio import ENGLISH_WORDS, GERMAN_WORDS, normalize, write_german_clip
from tests.services import submit, wait_for_job

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def german(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_german_clip(tmp_path_factory.mktemp("base"))


def finished(client: httpx.Client, audio: Path, engine: str, **fields: str) -> dict[str, Any]:
    status = wait_for_job(client, submit(client, audio, engine, model="base", **fields), 600)
    assert status["status"] == "finished", status
    result: dict[str, Any] = status["result"]
    assert result["model"] == "base"
    return result


@pytest.mark.parametrize("engine", ["whisperx", "timestamped"])
def test_base_detects_and_transcribes_german(
    client: httpx.Client, german: Path, engine: str
) -> None:
    result = finished(client, german, engine)

    assert result["language"] == "de"
    assert result["language_probability"] > 0.9
    words = set(normalize(result["text"]).split())
    assert "software" in words
    assert len(GERMAN_WORDS & words) >= 3, result["text"]
    assert result["word_timing_source"] in ("cross-attention", "whisper-timestamped")


def test_base_translates_german_to_english(client: httpx.Client, german: Path) -> None:
    result = finished(client, german, "whisperx", task="translate")

    words = set(normalize(result["text"]).split())
    assert "software" in words
    assert len(ENGLISH_WORDS & words) >= 2, result["text"]
    assert not GERMAN_WORDS & words, result["text"]
