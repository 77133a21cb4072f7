"""The operator's catalogue, engine/model routes, their queues' names and their stats."""

from __future__ import annotations

import json
from pathlib import Path

import fakeredis
import pytest
from pydantic import ValidationError
from rq import Queue

from common.catalog import KNOWN_MODELS, CatalogEntry, Catalogue, EngineName, Route
from common.contract import Keys, home_queue_name, route_of_queue, route_queue_name
from common.routing import queue_stats, service_queue_names
from config import Settings
from tests.fakes import enqueue_path, jobs_queue

WHISPERX, TIMESTAMPED = EngineName.WHISPERX, EngineName.TIMESTAMPED


def test_routes_are_written_engine_slash_model() -> None:
    route = Route.parse(" whisperx/large-v3 ")
    assert route == Route(WHISPERX, "large-v3")
    assert route.id == str(route) == "whisperx/large-v3"
    for bad in ("large-v3", "whisperx/", "faster/large-v3", "/tiny"):
        with pytest.raises(ValueError, match="engine/model"):
            Route.parse(bad)


def test_settings_read_route_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRELOAD_MODELS", "whisperx/large-v3, timestamped/tiny.en,")
    monkeypatch.setenv("WORKER_MODELS", "")
    settings = Settings()
    assert settings.preload_models == [Route(WHISPERX, "large-v3"), Route(TIMESTAMPED, "tiny.en")]
    assert settings.worker_models == []
    monkeypatch.setenv("WORKER_MODELS", "whisper-1")
    with pytest.raises(ValidationError, match="engine/model"):
        Settings()


def test_a_catalogue_entry_names_a_source_per_engine() -> None:
    both = CatalogEntry.model_validate("/models/team-ct2")
    assert (both.whisperx, both.timestamped) == ("/models/team-ct2", "/models/team-ct2")
    one = CatalogEntry.model_validate({"whisperx": "distil-whisper/distil-large-v3-ct2"})
    assert one.source(WHISPERX) == "distil-whisper/distil-large-v3-ct2"
    assert one.source(TIMESTAMPED) is None
    with pytest.raises(ValidationError, match="needs a source"):
        CatalogEntry.model_validate({"english_only": True})
    with pytest.raises(ValidationError):
        CatalogEntry.model_validate({"whisperx": "x", "path": "/etc"})


def test_models_is_json_or_a_file_holding_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    catalogue = {"team-en": {"whisperx": "/m/ct2", "english_only": True}}
    monkeypatch.setenv("MODELS", json.dumps(catalogue))
    assert Settings().models == {"team-en": CatalogEntry(whisperx="/m/ct2", english_only=True)}
    path = tmp_path / "models.json"
    path.write_text(json.dumps(catalogue))
    monkeypatch.setenv("MODELS", str(path))
    assert list(Settings().models) == ["team-en"]
    monkeypatch.setenv("MODELS", str(tmp_path / "absent.json"))
    with pytest.raises(ValidationError, match="cannot read the MODELS file"):
        Settings()
    monkeypatch.setenv("MODELS", json.dumps({"../etc/passwd": "/x"}))
    with pytest.raises(ValidationError, match="a name, not a path"):
        Settings()
    monkeypatch.setenv("MODELS", "")
    assert Settings().models == {}


def test_the_catalogue_offers_known_names_and_entries_per_engine() -> None:
    entries = {
        "distil-large-v3": CatalogEntry(whisperx="distil-whisper/distil-large-v3-ct2"),
        "team": CatalogEntry.model_validate("/models/team"),
        "large-v3": CatalogEntry.model_validate("/air-gapped/large-v3"),
    }
    catalogue = Catalogue(entries)
    assert catalogue.models() == [*KNOWN_MODELS, "distil-large-v3", "team"]
    assert catalogue.offers(Route(WHISPERX, "distil-large-v3"))
    assert not catalogue.offers(Route(TIMESTAMPED, "distil-large-v3"))
    assert catalogue.engines_of("distil-large-v3") == [WHISPERX]
    assert catalogue.engines_of("team") == [WHISPERX, TIMESTAMPED]
    assert catalogue.source(Route(TIMESTAMPED, "large-v3")) == "/air-gapped/large-v3"
    assert catalogue.source(Route(WHISPERX, "tiny")) is None  # the engine resolves the name
    routes = catalogue.routes()
    assert len(routes) == 2 * len(KNOWN_MODELS) + 3
    assert routes.index(Route(WHISPERX, "team")) < routes.index(Route(TIMESTAMPED, "tiny.en"))


def test_allowed_models_narrows_the_catalogue() -> None:
    entries = {"team": CatalogEntry.model_validate("/models/team")}
    catalogue = Catalogue(entries, ["team", "tiny.en", "Systran/faster-whisper-small"])
    assert catalogue.models() == ["tiny.en", "team", "Systran/faster-whisper-small"]
    assert not catalogue.offers(Route(WHISPERX, "base"))


def test_english_only_comes_from_the_entry_or_the_name() -> None:
    catalogue = Catalogue(
        {
            "office": CatalogEntry(whisperx="/m", english_only=True),
            "multi.en": CatalogEntry(whisperx="/m", english_only=False),
        }
    )
    assert catalogue.english_only("office")
    assert not catalogue.english_only("multi.en")
    assert catalogue.english_only("tiny.en")
    assert not catalogue.english_only("large-v3")


def test_each_route_has_a_queue_under_queue_name() -> None:
    route = Route(WHISPERX, "tiny.en")
    name = route_queue_name("transcribe", route)
    assert name == "transcribe@whisperx:tiny.en"
    assert route_queue_name(name, route) == name
    assert home_queue_name(name) == home_queue_name("transcribe") == "transcribe"
    assert route_of_queue(name) == route
    assert route_of_queue("transcribe") is None
    assert route_of_queue("transcribe@faster:tiny") is None


def test_a_route_queues_keys_are_the_services_but_its_own_list_and_turns() -> None:
    home, routed = Keys("transcribe"), Keys("transcribe@whisperx:tiny.en")
    assert (routed.index, routed.api_keys, routed.ended("j"), routed.cancel("j")) == (
        home.index, home.api_keys, home.ended("j"), home.cancel("j"),
    )  # fmt: skip
    assert routed.active("alice") == home.active("alice")
    assert routed.queue == "rq:queue:transcribe@whisperx:tiny.en"
    assert routed.rotation == "rq:queue:transcribe@whisperx:tiny.en:rotation"
    assert routed.pending("alice") == "rq:queue:transcribe@whisperx:tiny.en:pending:alice"
    assert home.rotation == "rq:queue:transcribe:rotation"  # as before routing


def test_stats_count_waiting_lists_and_find_the_oldest_job(
    queue: Queue, settings: Settings, redis: fakeredis.FakeRedis
) -> None:
    first = enqueue_path(queue, settings, settings.upload_dir / "a.wav", owner="alice")
    enqueue_path(queue, settings, settings.upload_dir / "b.wav", owner="alice")
    enqueue_path(queue, settings, settings.upload_dir / "c.wav", owner="bob")
    enqueue_path(queue, settings, settings.upload_dir / "d.wav", model="base")
    names = service_queue_names(redis, queue.name, [Route(TIMESTAMPED, "tiny")])
    assert names == [
        "transcribe",
        "transcribe@timestamped:tiny",
        "transcribe@whisperx:base",
        "transcribe@whisperx:tiny.en",
    ]
    stats = {item.queue_name: item for item in queue_stats(redis, names)}
    tiny = stats[jobs_queue(queue).name]
    assert (tiny.route, tiny.depth, tiny.running, tiny.workers) == (
        Route(WHISPERX, "tiny.en"), 3, 0, 0,
    )  # fmt: skip
    assert tiny.oldest_enqueued_at is not None
    assert first.enqueued_at is not None
    assert abs((tiny.oldest_enqueued_at - first.enqueued_at).total_seconds()) < 0.01
    assert tiny.oldest_age_s() >= 0
    assert stats["transcribe@whisperx:base"].depth == 1
    empty = stats["transcribe@timestamped:tiny"]
    assert (empty.depth, empty.oldest_enqueued_at, empty.oldest_age_s()) == (0, None, 0.0)
    assert stats["transcribe"].route is None
