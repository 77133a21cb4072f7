"""What the API says about models the live workers serve: the 503, /health and /v1/models."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from rq import Queue

from common.catalog import CatalogEntry, EngineName, Route
from config import Settings
from tests.fakes import queued_jobs
from worker.routing import worker_queues
from worker.rq_worker import TranscriptionWorker
from worker.runtime import Runtime

TINY = Route(EngineName.WHISPERX, "tiny.en")
BASE = Route(EngineName.WHISPERX, "base")


def start_worker(queue: Queue, runtime: Runtime, routes: list[Route]) -> TranscriptionWorker:
    """A worker registered as live (as one is once its models are preloaded), serving `routes`."""
    worker = TranscriptionWorker(
        worker_queues(queue, routes), connection=queue.connection, runtime=runtime
    )
    worker.register_birth()  # type: ignore[no-untyped-call]
    return worker


def post(client: TestClient, audio: Path, model: str, engine: str = "whisperx") -> object:
    with audio.open("rb") as handle:
        return client.post(
            "/transcribe",
            files={"file": (audio.name, handle, "audio/wav")},
            data={"engine": engine, "model": model},
        )


def test_without_live_workers_every_offered_model_is_queued(
    client: TestClient, queue: Queue, tone_wav: Path
) -> None:
    assert post(client, tone_wav, "base").status_code == 200  # type: ignore[attr-defined]
    assert queued_jobs(queue) == 1


def test_a_model_no_live_worker_serves_is_refused_at_once(
    client: TestClient, queue: Queue, runtime: Runtime, tone_wav: Path, settings: Settings
) -> None:
    start_worker(queue, runtime, [TINY])
    start_worker(queue, runtime, [TINY, Route(EngineName.TIMESTAMPED, "tiny.en")])
    refused = post(client, tone_wav, "base")
    assert refused.status_code == 503  # type: ignore[attr-defined]
    assert refused.headers["retry-after"] == str(settings.redis_retry_after_s)  # type: ignore[attr-defined]
    assert refused.json()["detail"] == (  # type: ignore[attr-defined]
        "no live worker serves model 'base' on engine 'whisperx' (whisperx/base); served now, "
        "with their workers: whisperx/tiny.en (2), timestamped/tiny.en (1)"
    )
    assert queued_jobs(queue) == 0
    assert list(settings.upload_dir.iterdir()) == []
    assert post(client, tone_wav, "tiny.en").status_code == 200  # type: ignore[attr-defined]
    settings.queue_unserved_models = True
    assert post(client, tone_wav, "base").status_code == 200  # type: ignore[attr-defined]
    assert queued_jobs(queue) == 2


def test_the_openai_routes_refuse_in_openais_shape(
    client: TestClient, queue: Queue, runtime: Runtime, tone_wav: Path
) -> None:
    start_worker(queue, runtime, [TINY])
    with tone_wav.open("rb") as handle:
        refused = client.post(
            "/v1/audio/transcriptions",
            files={"file": (tone_wav.name, handle, "audio/wav")},
            data={"model": "whisperx/base"},
        )
    assert refused.status_code == 503
    assert "no live worker serves model 'base'" in refused.json()["error"]["message"]


def test_health_shows_what_is_servable_and_by_how_many(
    client: TestClient, queue: Queue, runtime: Runtime, tone_wav: Path
) -> None:
    assert client.get("/health").json()["servable"] == {}
    assert post(client, tone_wav, "base").status_code == 200  # type: ignore[attr-defined]
    start_worker(queue, runtime, [TINY])
    start_worker(queue, runtime, [TINY, BASE])
    body = client.get("/health").json()
    assert body["workers"] == 2
    assert body["queued"] == 1
    assert body["servable"] == {"whisperx/tiny.en": 2, "whisperx/base": 1}


def test_openai_models_show_their_workers(
    client: TestClient, queue: Queue, runtime: Runtime
) -> None:
    start_worker(queue, runtime, [TINY])
    listed = {model["id"]: model["workers"] for model in client.get("/v1/models").json()["data"]}
    assert listed["whisper-1"] == listed["whisperx/tiny.en"] == 1
    assert listed["whisperx/base"] == listed["timestamped/tiny.en"] == 0
    assert client.get("/v1/models/whisperx/tiny.en").json()["workers"] == 1
    assert client.get("/v1/models/whisperx/nope").status_code == 404


def test_catalogue_names_are_offered_on_their_engines(
    client: TestClient, settings: Settings, tone_wav: Path
) -> None:
    settings.models = {
        "distil": CatalogEntry(whisperx="distil-whisper/distil-large-v3-ct2"),
        "office": CatalogEntry.model_validate({"whisperx": "/m", "timestamped": "/m.pt",
                                               "english_only": True}),
    }  # fmt: skip
    assert post(client, tone_wav, "distil").status_code == 200  # type: ignore[attr-defined]
    refused = post(client, tone_wav, "distil", engine="timestamped")
    assert refused.status_code == 422  # type: ignore[attr-defined]
    assert refused.json()["detail"][0]["msg"] == (  # type: ignore[attr-defined]
        "model 'distil' is not offered on engine 'timestamped'; it runs on ['whisperx']"
    )
    with tone_wav.open("rb") as handle:
        french = client.post(
            "/transcribe",
            files={"file": (tone_wav.name, handle, "audio/wav")},
            data={"engine": "whisperx", "model": "office", "language": "fr"},
        )
    assert french.status_code == 422
    assert "only transcribes English" in french.text
    ids = [model["id"] for model in client.get("/v1/models").json()["data"]]
    assert "whisperx/distil" in ids
    assert "timestamped/distil" not in ids
    assert "timestamped/office" in ids
