"""The OpenAI-compatible routes driven by the official `openai` SDK, against a real deployment
(redis-server, the API under gunicorn, a worker on the bundled tiny.en model)."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import srt
import webvtt
from redis import Redis

from api.keys.store import KeyStore
from tests.audio import (
    ENGLISH_WORDS,
    GERMAN_WORDS,
    JFK,
    JFK_PHRASE,
    MULTILINGUAL,
    normalize,
    write_german_clip,
)
from tests.services import Service

pytestmark = pytest.mark.integration


def sdk(service: Service, api_key: str = "unused", **options: object) -> openai.OpenAI:
    """The SDK pointed at the deployment, as a user configures it (base URL and key)."""
    return openai.OpenAI(base_url=f"{service.url}/v1", api_key=api_key, **options)  # type: ignore[arg-type]


@pytest.fixture
def client(service: Service) -> Iterator[openai.OpenAI]:
    with sdk(service, max_retries=0) as made:
        yield made


def unique_prompt() -> str:
    """A prompt no other request sends: the request makes a job of its own (no dedup)."""
    return f"Kennedy's inaugural address {uuid.uuid4().hex[:8]}."


def test_models_lists_whisper_1_and_one_id_per_engine_and_model(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert ids[0] == "whisper-1"
    assert {"whisperx/tiny.en", "timestamped/tiny.en", "whisperx/large-v3"} <= set(ids)
    model = client.models.retrieve("timestamped/tiny.en")
    assert (model.id, model.object, model.owned_by) == (
        "timestamped/tiny.en",
        "model",
        "timestamped",
    )
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("whisperx/no-such-model")
    assert missing.value.code == "model_not_found"


def test_every_response_format_from_one_job(client: openai.OpenAI, service: Service) -> None:
    prompt = unique_prompt()
    with JFK.open("rb") as audio:
        raw = client.audio.transcriptions.with_raw_response.create(
            model="whisper-1", file=audio, prompt=prompt
        )
    job_id = raw.headers["x-job-id"]
    first = raw.parse()
    assert JFK_PHRASE in normalize(first.text)
    assert first.usage is not None
    assert first.usage.type == "duration"
    assert first.usage.seconds == 11

    def create(fmt: str) -> object:
        with JFK.open("rb") as audio:
            raw = client.audio.transcriptions.with_raw_response.create(
                model="whisper-1",
                file=audio,
                prompt=prompt,
                response_format=fmt,  # type: ignore[call-overload]
            )
        assert raw.headers["x-job-id"] == job_id, "the same file and fields made a second job"
        return raw.parse()

    text = create("text")
    assert isinstance(text, str)
    assert normalize(text) == normalize(first.text)
    cues = list(srt.parse(str(create("srt"))))
    assert cues
    assert JFK_PHRASE in normalize(" ".join(cue.content for cue in cues))
    captions = webvtt.from_buffer(io.StringIO(str(create("vtt"))))
    assert JFK_PHRASE in normalize(" ".join(caption.text for caption in captions.captions))
    verbose = create("verbose_json")
    assert isinstance(verbose, openai.types.audio.TranscriptionVerbose)
    assert verbose.language == "english"
    assert 10.5 < verbose.duration < 11.5
    assert verbose.segments
    assert verbose.words is None
    for index, segment in enumerate(verbose.segments):
        assert segment.id == index
        assert 0 <= segment.start <= segment.end <= verbose.duration
        assert isinstance(segment.tokens, list)
        assert isinstance(segment.seek, int)
        assert segment.compression_ratio > 0
        assert segment.temperature == 0
    listed = httpx.get(f"{service.url}/jobs/{job_id}", timeout=30).json()
    assert listed["status"] == "finished"
    assert listed["engine"] == "whisperx"


def test_word_and_segment_timings_through_timestamped(client: openai.OpenAI) -> None:
    with JFK.open("rb") as audio:
        verbose = client.audio.transcriptions.create(
            model="timestamped/tiny.en",
            file=audio,
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
            prompt=unique_prompt(),
        )
    assert verbose.words
    assert verbose.segments
    assert JFK_PHRASE in normalize(" ".join(word.word for word in verbose.words))
    previous = 0.0
    for word in verbose.words:
        assert previous <= word.start <= word.end <= verbose.duration
        previous = word.start
    assert all(segment.tokens for segment in verbose.segments), "whisper's own tokens are kept"
    assert all(-5 < segment.avg_logprob <= 0 for segment in verbose.segments)


@pytest.mark.parametrize("model", ["whisper-1", "timestamped/tiny.en"])
def test_stream_true_sends_openais_transcription_events(client: openai.OpenAI, model: str) -> None:
    with JFK.open("rb") as audio:
        stream = client.audio.transcriptions.create(
            model=model, file=audio, stream=True, prompt=unique_prompt()
        )
        events = list(stream)
    kinds = [event.type for event in events]
    assert kinds[-1] == "transcript.text.done"
    assert "transcript.text.delta" in kinds
    assert "transcript.text.segment" in kinds
    deltas = "".join(event.delta for event in events if event.type == "transcript.text.delta")
    done = events[-1]
    assert done.type == "transcript.text.done"
    assert JFK_PHRASE in normalize(done.text)
    assert normalize(deltas) == normalize(done.text)
    segments = [event for event in events if event.type == "transcript.text.segment"]
    assert [segment.id for segment in segments] == [str(n) for n in range(len(segments))]


# openai 3.x marks `audio.translations.create` deprecated (OpenAI's whisper-1 retires in 2027);
# the route still serves the clients that call it.
@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")
def test_bad_requests_are_openai_errors_naming_the_field(client: openai.OpenAI) -> None:
    with JFK.open("rb") as audio, pytest.raises(openai.NotFoundError) as unknown:
        client.audio.transcriptions.create(model="whisperx/no-such-model", file=audio)
    assert unknown.value.code == "model_not_found"
    with JFK.open("rb") as audio, pytest.raises(openai.BadRequestError) as language:
        client.audio.transcriptions.create(model="whisper-1", file=audio, language="xx")
    assert language.value.param == "language"
    with JFK.open("rb") as audio, pytest.raises(openai.BadRequestError) as english_only:
        client.audio.transcriptions.create(model="whisper-1", file=audio, language="de")
    assert english_only.value.param == "language"
    assert "only transcribes English" in english_only.value.message
    with JFK.open("rb") as audio, pytest.raises(openai.BadRequestError) as granularity:
        client.audio.transcriptions.create(
            model="whisper-1", file=audio, timestamp_granularities=["word"]
        )
    assert granularity.value.param == "timestamp_granularities"
    with JFK.open("rb") as audio, pytest.raises(openai.BadRequestError) as translation:
        client.audio.translations.create(model="whisper-1", file=audio)
    assert translation.value.param == "model"
    assert "cannot translate" in translation.value.message
    body = translation.value.body
    assert isinstance(body, dict)
    assert set(body) == {"message", "type", "param", "code"}
    assert body["type"] == "invalid_request_error"


@pytest.fixture(scope="module")
def german(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_german_clip(tmp_path_factory.mktemp("openai"))


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")
def test_translations_give_english_from_german_on_the_multilingual_base(
    client: openai.OpenAI, german: Path
) -> None:
    with german.open("rb") as audio:
        translated = client.audio.translations.create(
            model="whisperx/base", file=audio, response_format="verbose_json", timeout=600
        )
    assert translated.task == "translate"  # type: ignore[attr-defined]
    assert translated.language == "english"
    words = set(normalize(translated.text).split())
    assert "software" in words, translated.text
    assert len(ENGLISH_WORDS & words) >= 2, translated.text
    assert not GERMAN_WORDS & words, translated.text


def test_keys_are_checked_like_on_every_other_route(keyed_service: Service) -> None:
    store = KeyStore(Redis(port=keyed_service.redis_port), "transcribe")
    secret = store.create(f"openai-{uuid.uuid4().hex[:6]}")
    with sdk(keyed_service, api_key="not-a-key", max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError) as refused:
            wrong.models.list()
        assert refused.value.code == "invalid_api_key"
    with sdk(keyed_service, api_key=secret, max_retries=0) as keyed:
        assert "whisper-1" in [model.id for model in keyed.models.list()]
    missing = httpx.get(f"{keyed_service.url}/v1/models", timeout=30)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_api_key"


def test_a_request_timed_out_by_the_client_and_retried_runs_once(keyed_service: Service) -> None:
    """60 s of audio takes several seconds here; the SDK gives up on each attempt after 2 s and
    retries, and the retries are answered from the first attempt's job when it ends."""
    store = KeyStore(Redis(port=keyed_service.redis_port), "transcribe")
    name = f"retry-{uuid.uuid4().hex[:6]}"
    secret = store.create(name)
    attempts: list[httpx.Request] = []
    http = httpx.Client(event_hooks={"request": [attempts.append]})
    with (
        sdk(keyed_service, api_key=secret, timeout=2.0, max_retries=8, http_client=http) as client,
        MULTILINGUAL.open("rb") as audio,
    ):
        result = client.audio.transcriptions.create(model="whisper-1", file=audio)
    assert "permission is hereby granted" in normalize(result.text)
    assert len(attempts) >= 2, "the first attempt did not time out: the test proves nothing"
    jobs = httpx.get(
        f"{keyed_service.url}/jobs", headers={"Authorization": f"Bearer {secret}"}, timeout=30
    ).json()["jobs"]
    assert len(jobs) == 1, jobs
    assert jobs[0]["status"] == "finished"
