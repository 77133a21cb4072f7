"""OpenAI's error shape on /v1, and our own everywhere else."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.audio import write_tone_wav


def test_v1_errors_are_openai_shaped_and_ours_are_unchanged(
    client: TestClient, tmp_path: Path
) -> None:
    unknown_route = client.get("/v1/nothing-here")
    assert unknown_route.status_code == 404
    assert set(unknown_route.json()["error"]) == {"message", "type", "param", "code"}

    missing_model = client.post(
        "/v1/audio/transcriptions", files={"file": ("a.wav", b"RIFF")}, data={}
    )
    assert missing_model.status_code == 400
    assert missing_model.json()["error"]["param"] == "model"

    audio = write_tone_wav(tmp_path / "tone.wav")
    ours = client.post("/transcribe", files={"file": ("a.wav", audio.read_bytes())}, data={})
    assert ours.status_code == 422
    assert ours.json()["detail"][0]["loc"] == ["body", "engine"]


def test_model_lookup_is_openais_404(client: TestClient) -> None:
    assert client.get("/v1/models/whisperx/tiny.en").json()["owned_by"] == "whisperx"
    missing = client.get("/v1/models/whisperx/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"
