"""The seed's API test cases, and the upload rules, on fakeredis."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from rq import Queue

from common.catalog import KNOWN_MODELS, WHISPER_LANGUAGES, EngineName
from common.contract import load_job
from config import Settings
from tests.unit.conftest import uploads_left


def post_audio(
    client: TestClient,
    path: Path,
    data: dict[str, str],
    filename: str | None = None,
) -> object:
    with path.open("rb") as handle:
        return client.post(
            "/transcribe",
            files={"file": (filename or path.name, handle, "application/octet-stream")},
            data=data,
        )


def test_health_check(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["redis"] is True
    assert body["workers"] == 0


def test_transcribe_success(
    client: TestClient, tone_wav: Path, queue: Queue, settings: Settings
) -> None:
    with tone_wav.open("rb") as handle:
        response = client.post(
            "/transcribe",
            files={"file": ("test.wav", handle, "audio/wav")},
            data={"engine": "whisperx", "language": "en"},
        )
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "queued"
    job_id = body["job_id"]
    assert uuid.UUID(job_id)
    assert response.headers["location"] == f"/status/{job_id}"
    job = load_job(queue, job_id)
    assert job is not None
    assert job.func_name == "worker.tasks.transcribe"
    assert job.kwargs["engine"] == "whisperx"
    assert job.kwargs["model"] == settings.default_model
    assert job.kwargs["options"]["language"] == "en"
    saved = Path(job.kwargs["audio_path"])
    assert saved == settings.upload_dir / f"{job_id}.wav"
    assert saved.read_bytes() == tone_wav.read_bytes()
    assert uploads_left(settings) == [saved]
    assert job.timeout == settings.job_timeout_min_s + 1
    assert job.result_ttl == settings.result_ttl_s
    assert job.failure_ttl == settings.failure_ttl_s


def test_transcribe_invalid_format(client: TestClient, tmp_path: Path, settings: Settings) -> None:
    invalid = tmp_path / "test.txt"
    invalid.write_text("not audio")
    response = post_audio(client, invalid, {"engine": "whisperx"})
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert "unsupported file format" in response.json()["detail"]  # type: ignore[attr-defined]
    assert uploads_left(settings) == []


def test_transcribe_invalid_engine(client: TestClient, tone_wav: Path, settings: Settings) -> None:
    response = post_audio(client, tone_wav, {"engine": "invalid_engine"})
    assert response.status_code == 422  # type: ignore[attr-defined]
    message = str(response.json())  # type: ignore[attr-defined]
    for engine in EngineName:
        assert engine.value in message
    assert uploads_left(settings) == []


def test_get_job_status_not_found(client: TestClient) -> None:
    assert client.get("/status/nonexistent-job-id").status_code == 404
    assert client.get(f"/status/{uuid.uuid4()}").status_code == 404


def test_get_job_status_exists(client: TestClient, tone_wav: Path) -> None:
    upload = post_audio(client, tone_wav, {"engine": "timestamped"})
    job_id = upload.json()["job_id"]  # type: ignore[attr-defined]
    status = client.get(f"/status/{job_id}")
    assert status.status_code == 200
    body = status.json()
    assert body["job_id"] == job_id
    assert body["status"] in ["queued", "started"]
    assert body["engine"] == "timestamped"
    assert body["progress"] == {"stage": "queued", "percent": None}
    assert body["result"] is None
    assert body["created_at"]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("test.wav", b"RIFF" + b"\x00" * 100),  # a fake RIFF header
        (
            "song.mp3",  # a playlist named like audio
            b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n",
        ),
    ],
    ids=["fake RIFF header", "playlist named .mp3"],
)
def test_what_is_not_audio_is_415_and_leaves_nothing(
    client: TestClient, tmp_path: Path, settings: Settings, name: str, content: bytes
) -> None:
    fake = tmp_path / name
    fake.write_bytes(content)
    response = post_audio(client, fake, {"engine": "whisperx"})
    assert response.status_code == 415  # type: ignore[attr-defined]
    assert uploads_left(settings) == []


def test_too_large_is_413_and_leaves_nothing(
    client: TestClient, tmp_path: Path, settings: Settings
) -> None:
    big = tmp_path / "big.wav"
    big.write_bytes(b"\x00" * (settings.max_file_size + 1))
    response = post_audio(client, big, {"engine": "whisperx"})
    assert response.status_code == 413  # type: ignore[attr-defined]
    assert uploads_left(settings) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("language", "xx"),
        ("language", "english"),
        ("model", "huge-v9"),
        ("model", "/etc/passwd"),
        ("model", "../../models/large-v3"),
    ],
)
def test_unknown_language_or_model_is_422(
    client: TestClient, tone_wav: Path, settings: Settings, field: str, value: str
) -> None:
    response = post_audio(client, tone_wav, {"engine": "whisperx", field: value})
    assert response.status_code == 422  # type: ignore[attr-defined]
    assert uploads_left(settings) == []


def test_english_only_model_refuses_other_languages(client: TestClient, tone_wav: Path) -> None:
    response = post_audio(client, tone_wav, {"engine": "whisperx", "language": "de"})
    assert response.status_code == 422  # type: ignore[attr-defined]
    assert "only transcribes English" in str(response.json())  # type: ignore[attr-defined]
    accepted = post_audio(
        client, tone_wav, {"engine": "whisperx", "language": "de", "model": "small"}
    )
    assert accepted.status_code == 200  # type: ignore[attr-defined]


def test_missing_file_is_422(client: TestClient) -> None:
    response = client.post("/transcribe", data={"engine": "whisperx"}, files={"x": ("", b"")})
    assert response.status_code == 422


def test_not_multipart_is_415(client: TestClient) -> None:
    response = client.post("/transcribe", json={"engine": "whisperx"})
    assert response.status_code == 415


def test_client_filename_never_becomes_a_path(
    client: TestClient, tone_wav: Path, queue: Queue, settings: Settings
) -> None:
    response = post_audio(
        client, tone_wav, {"engine": "whisperx"}, filename="../../../etc/evil name.WAV"
    )
    assert response.status_code == 200  # type: ignore[attr-defined]
    job = load_job(queue, response.json()["job_id"])  # type: ignore[attr-defined]
    assert job is not None
    assert Path(job.kwargs["audio_path"]).parent == settings.upload_dir
    assert Path(job.kwargs["audio_path"]).suffix == ".wav"


def test_allowed_models_setting_limits_choices(
    client: TestClient, tone_wav: Path, settings: Settings
) -> None:
    settings.allowed_models = ["tiny.en", "base"]
    assert post_audio(client, tone_wav, {"engine": "whisperx", "model": "base"}).status_code == 200  # type: ignore[attr-defined]
    refused = post_audio(client, tone_wav, {"engine": "whisperx", "model": "large-v3"})
    assert refused.status_code == 422  # type: ignore[attr-defined]


def test_redis_down_is_503_with_retry_after_and_no_upload(tmp_path: Path, tone_wav: Path) -> None:
    from api.http.app import create_app

    dead = Settings(upload_dir=tmp_path / "uploads", redis_port=1, redis_timeout_s=0.5)
    app = create_app(dead)
    with TestClient(app) as client:
        response = post_audio(client, tone_wav, {"engine": "whisperx"})
        assert response.status_code == 503  # type: ignore[attr-defined]
        assert response.headers["retry-after"] == str(dead.redis_retry_after_s)  # type: ignore[attr-defined]
        health = client.get("/health")
        assert health.status_code == 503
        assert health.json()["redis"] is False
        assert client.get(f"/status/{uuid.uuid4()}").status_code == 503
    assert uploads_left(dead) == []


def test_openapi_shows_engine_language_and_model_choices(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    body = document["paths"]["/transcribe"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body
    assert set(schemas["EngineName"]["enum"]) == {engine.value for engine in EngineName}
    assert schemas["Language"]["enum"] == list(WHISPER_LANGUAGES)
    assert schemas["ModelName"]["enum"] == list(KNOWN_MODELS)
    assert body["multipart/form-data"]["schema"]["required"] == ["file", "engine"]
    assert client.get("/docs").status_code == 200


def test_docs_pages_load_every_asset_from_the_service_itself(client: TestClient) -> None:
    """/docs and /redoc must work air-gapped: no CDN, no outside host, and each asset served."""
    for page in ("/docs", "/redoc"):
        response = client.get(page)
        assert response.status_code == 200
        references = re.findall(r"""(?:src|href)=["']([^"']+)["']""", response.text)
        references += re.findall(r"""url:\s*["']([^"']+)["']""", response.text)
        references += re.findall(r"""spec-url=["']([^"']+)["']""", response.text)
        assert references, f"{page} references no assets"
        for reference in references:
            assert reference.startswith("/"), f"{page} loads {reference} from outside"
            assert not reference.startswith("//"), f"{page} loads {reference} from outside"
            assert client.get(reference).status_code == 200, reference
        assert "cdn" not in response.text.lower()


def test_openapi_documents_the_speaker_options_on_every_submission_route(
    client: TestClient,
) -> None:
    document = client.get("/openapi.json").json()
    upload = document["paths"]["/transcribe"]["post"]["requestBody"]["content"]
    openai = document["paths"]["/v1/audio/transcriptions"]["post"]["requestBody"]["content"]
    for form in (upload, openai):
        properties = form["multipart/form-data"]["schema"]["properties"]
        assert {"diarize", "num_speakers", "min_speakers", "max_speakers"} <= set(properties)
    url_body = document["paths"]["/transcribe/url"]["post"]["requestBody"]["content"]
    reference = url_body["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert "diarize" in document["components"]["schemas"][reference]["properties"]
