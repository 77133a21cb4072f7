"""Job options and callback URLs on both submission endpoints, and URL input's refusals.

A stub resolver stands in for DNS; refused addresses are refused before any connection.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from rq import Queue

from api.http.deps import get_outbound_policy
from common.contract import load_job, meta_of
from common.outbound import IPAddress, OutboundPolicy, Unresolvable
from config import Settings
from tests.fakes import queued_jobs
from tests.services import free_port
from tests.unit.conftest import uploads_left

DNS = {
    "hooks.example.com": ["93.184.216.34"],
    "audio.example.com": ["93.184.216.34"],
    "intranet.example.com": ["10.1.2.3"],
    "rebind.example.com": ["93.184.216.34", "127.0.0.1"],
    "metadata.example.com": ["169.254.169.254"],
    "v6-local.example.com": ["fd00::1"],
    "local-files.example.com": ["127.0.0.1"],
}


class StubResolver:
    """Fixed answers; records every lookup."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> list[IPAddress]:
        del port
        self.asked.append(host)
        if host not in DNS:
            raise Unresolvable(f"host {host!r} cannot be resolved")
        return [ipaddress.ip_address(address) for address in DNS[host]]


@pytest.fixture
def resolver(client: TestClient, settings: Settings) -> StubResolver:
    """The API's outbound policy with stub DNS, and a webhook secret configured."""
    stub = StubResolver()
    settings.webhook_secret = SecretStr("test-secret")
    client.app.dependency_overrides[get_outbound_policy] = lambda: OutboundPolicy(  # type: ignore[attr-defined]
        settings.outbound_allowlist, stub
    )
    return stub


def upload(client: TestClient, audio: Path, **fields: str) -> Any:
    with audio.open("rb") as handle:
        return client.post(
            "/transcribe", files={"file": ("a.wav", handle, "audio/wav")}, data=fields
        )


@pytest.mark.usefixtures("resolver")
def test_options_travel_to_the_worker(client: TestClient, tone_wav: Path, queue: Queue) -> None:
    response = upload(
        client,
        tone_wav,
        engine="whisperx",
        model="small",
        language="de",
        task="translate",
        initial_prompt="Glossar: Quartalszahlen.",
        hotwords="EBITDA",
        vad="false",
        word_timestamps="false",
        beam_size="3",
        temperature="0",
        callback_url="https://hooks.example.com/done?key=1",
    )
    assert response.status_code == 200, response.text
    job = load_job(queue, response.json()["job_id"])
    assert job is not None
    assert job.kwargs["options"] == {
        "language": "de",
        "task": "translate",
        "initial_prompt": "Glossar: Quartalszahlen.",
        "hotwords": "EBITDA",
        "vad": False,
        "word_timestamps": False,
        "beam_size": 3,
        "temperature": 0.0,
    }
    assert meta_of(job).callback_url == "https://hooks.example.com/done?key=1"


@pytest.mark.usefixtures("resolver")
def test_speaker_options_travel_to_the_worker(
    client: TestClient, tone_wav: Path, queue: Queue
) -> None:
    response = upload(
        client, tone_wav, engine="whisperx", diarize="true", min_speakers="2", max_speakers="4"
    )
    assert response.status_code == 200, response.text
    job = load_job(queue, response.json()["job_id"])
    assert job is not None
    options = job.kwargs["options"]
    assert (options["diarize"], options["min_speakers"], options["max_speakers"]) == (True, 2, 4)
    assert "num_speakers" not in options


@pytest.mark.usefixtures("resolver")
def test_defaults_leave_options_minimal(client: TestClient, tone_wav: Path, queue: Queue) -> None:
    response = upload(client, tone_wav, engine="timestamped")
    job = load_job(queue, response.json()["job_id"])
    assert job is not None
    assert job.kwargs["options"] == {"task": "transcribe", "vad": True, "word_timestamps": True}
    assert "callback_url" not in job.meta


INVALID_FIELDS: list[tuple[dict[str, str], str]] = [
    ({"task": "summarize"}, "task"),
    ({"initial_prompt": "x" * 1001}, "initial_prompt"),
    ({"hotwords": "x" * 501}, "hotwords"),
    ({"engine": "timestamped", "hotwords": "ComfyUI"}, "hotwords"),
    ({"vad": "maybe"}, "vad"),
    ({"word_timestamps": "sometimes"}, "word_timestamps"),
    ({"beam_size": "0"}, "beam_size"),
    ({"beam_size": "11"}, "beam_size"),
    ({"beam_size": "2.5"}, "beam_size"),
    ({"temperature": "-0.1"}, "temperature"),
    ({"temperature": "1.5"}, "temperature"),
    ({"temperature": "0.4"}, "temperature"),  # whisperx does not sample
    ({"task": "translate"}, "task"),  # with the default tiny.en
    ({"callback_url": "ftp://hooks.example.com/x"}, "callback_url"),
    ({"callback_url": "https://intranet.example.com/x"}, "callback_url"),
    ({"callback_url": "http://169.254.169.254/latest"}, "callback_url"),
    ({"callback_url": "http://[::1]:8080/"}, "callback_url"),
    ({"callback_url": "https://" + "a" * 2048 + ".com/"}, "callback_url"),
    ({"hotword": "ComfyUI"}, "hotword"),  # a typo must not drop the option silently
    ({"diarize": "perhaps"}, "diarize"),
    ({"diarize": "true", "num_speakers": "0"}, "num_speakers"),
    ({"diarize": "true", "num_speakers": "21"}, "num_speakers"),
    ({"diarize": "true", "num_speakers": "two"}, "num_speakers"),
    ({"diarize": "true", "max_speakers": "0"}, "max_speakers"),
    ({"num_speakers": "2"}, "num_speakers"),  # a count without diarize
    ({"diarize": "false", "min_speakers": "2"}, "min_speakers"),
    ({"diarize": "true", "num_speakers": "2", "max_speakers": "3"}, "num_speakers"),
    ({"diarize": "true", "min_speakers": "3", "max_speakers": "2"}, "min_speakers"),
]


@pytest.mark.usefixtures("resolver")
@pytest.mark.parametrize(("fields", "field"), INVALID_FIELDS)
def test_each_invalid_option_is_422_on_upload(
    client: TestClient,
    tone_wav: Path,
    settings: Settings,
    queue: Queue,
    fields: dict[str, str],
    field: str,
) -> None:
    response = upload(client, tone_wav, **{"engine": "whisperx", **fields})
    assert response.status_code == 422, response.text
    assert field in str(response.json()["detail"])
    assert uploads_left(settings) == []
    assert queued_jobs(queue) == 0


@pytest.mark.parametrize(("fields", "field"), INVALID_FIELDS)
def test_each_invalid_option_is_422_on_url_input_before_any_download(
    client: TestClient,
    resolver: StubResolver,
    queue: Queue,
    fields: dict[str, str],
    field: str,
) -> None:
    body = {"url": "https://audio.example.com/a.mp3", "engine": "whisperx", **fields}
    response = client.post("/transcribe/url", json=body)
    assert response.status_code == 422, response.text
    assert field in str(response.json()["detail"])
    assert "audio.example.com" not in resolver.asked
    assert queued_jobs(queue) == 0


def test_callback_url_needs_a_webhook_secret(
    client: TestClient, tone_wav: Path, settings: Settings
) -> None:
    settings.webhook_secret = None
    response = upload(client, tone_wav, engine="whisperx", callback_url="https://x.example/h")
    assert response.status_code == 422
    assert "WEBHOOK_SECRET" in str(response.json())


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:8000/a.mp3", "loopback"),
        ("http://[::1]/a.mp3", "loopback"),
        ("http://10.0.0.5/a.mp3", "private"),
        ("http://172.16.0.5/a.mp3", "private"),
        ("http://192.168.0.5/a.mp3", "private"),
        ("http://169.254.10.10/a.mp3", "link-local"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "cloud metadata"),
        ("http://[fd12::1]/a.mp3", "unique-local"),
        ("http://0.0.0.0:8000/a.mp3", "unspecified"),
        ("http://intranet.example.com/a.mp3", "private"),
        ("http://metadata.example.com/", "cloud metadata"),
        ("http://v6-local.example.com/", "unique-local"),
        ("http://rebind.example.com/a.mp3", "loopback"),
        ("file:///etc/passwd", "only http and https"),
        ("ftp://audio.example.com/a.mp3", "only http and https"),
    ],
)
def test_url_input_refuses_each_address_class(
    client: TestClient, resolver: StubResolver, settings: Settings, url: str, kind: str
) -> None:
    response = client.post("/transcribe/url", json={"url": url, "engine": "whisperx"})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "url"]
    assert kind in detail["msg"]
    assert uploads_left(settings) == []
    assert len(resolver.asked) <= 1


def test_url_input_of_a_host_that_cannot_be_resolved_is_502(
    client: TestClient, resolver: StubResolver, settings: Settings
) -> None:
    response = client.post(
        "/transcribe/url", json={"url": "http://unknown.example.com/a.mp3", "engine": "whisperx"}
    )
    assert response.status_code == 502, response.text
    assert "cannot be reached" in response.json()["detail"]
    assert "cannot be resolved" in response.json()["detail"]
    assert resolver.asked == ["unknown.example.com"]
    assert uploads_left(settings) == []


def test_allowlisted_name_gets_through_to_the_download(
    client: TestClient, resolver: StubResolver, settings: Settings
) -> None:
    # The name resolves to loopback, allowed by name; nothing listens on the port, so the
    # download itself fails (502), which shows the address check let it through.
    settings.outbound_allowlist = ["local-files.example.com"]
    response = client.post(
        "/transcribe/url",
        json={"url": f"http://local-files.example.com:{free_port()}/a.mp3", "engine": "whisperx"},
    )
    assert response.status_code == 502, response.text
    assert "could not be fetched" in response.json()["detail"]
    assert resolver.asked == ["local-files.example.com"]
    assert uploads_left(settings) == []


def test_url_input_needs_json_with_url_and_engine(client: TestClient) -> None:
    assert client.post("/transcribe/url", json={"engine": "whisperx"}).status_code == 422
    assert client.post("/transcribe/url", json={"url": "http://a.example/"}).status_code == 422
    assert client.post("/transcribe/url", data={"url": "x"}).status_code == 422
    typo = {"url": "http://a.example/", "engine": "whisperx", "hotword": "x"}
    assert client.post("/transcribe/url", json=typo).status_code == 422


def test_openapi_documents_both_endpoints_and_the_options(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    upload = document["paths"]["/transcribe"]["post"]["requestBody"]["content"]
    bodies = {
        "upload": upload["multipart/form-data"]["schema"],
        "url": document["components"]["schemas"]["TranscribeUrlRequest"],
    }
    for name, body in bodies.items():
        properties = body["properties"]
        for option in (
            "task",
            "initial_prompt",
            "hotwords",
            "vad",
            "word_timestamps",
            "beam_size",
            "temperature",
            "callback_url",
        ):
            assert option in properties, (name, option)
    assert {"get", "delete"} <= set(document["paths"]["/jobs/{job_id}"])
    assert "get" in document["paths"]["/jobs"]
    assert "post" in document["paths"]["/transcribe/url"]


def test_an_unknown_field_is_named_in_the_422_on_both_routes(
    client: TestClient, tone_wav: Path, settings: Settings
) -> None:
    by_upload = upload(client, tone_wav, engine="whisperx", hotword="ComfyUI")
    by_url = client.post(
        "/transcribe/url",
        json={"url": "https://audio.example.com/a.mp3", "engine": "whisperx", "hotword": "x"},
    )
    for response in (by_upload, by_url):
        assert response.status_code == 422, response.text
        (detail,) = response.json()["detail"]
        assert detail["loc"] == ["body", "hotword"]
        assert detail["type"] == "extra_forbidden"
    assert uploads_left(settings) == []


@pytest.mark.parametrize("model", ["small", "no-such-model"])
def test_a_model_not_offered_is_422_with_the_servers_choices_and_the_value(
    client: TestClient, tone_wav: Path, settings: Settings, queue: Queue, model: str
) -> None:
    settings.allowed_models = ["base", "tiny.en"]
    response = upload(client, tone_wav, engine="whisperx", model=model)
    assert response.status_code == 422, response.text
    (detail,) = response.json()["detail"]
    assert detail["loc"] == ["body", "model"]
    assert detail["input"] == model
    assert "['tiny.en', 'base']" in detail["msg"]
    assert queued_jobs(queue) == 0
    assert upload(client, tone_wav, engine="whisperx", model="base").status_code == 200


def test_openapi_lists_only_the_offered_models(client: TestClient, settings: Settings) -> None:
    settings.allowed_models = ["tiny.en", "base"]
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert schemas["ModelName"]["enum"] == ["tiny.en", "base"]
    upload = document["paths"]["/transcribe"]["post"]["requestBody"]["content"]
    for body in (upload["multipart/form-data"]["schema"], schemas["TranscribeUrlRequest"]):
        choices = body["properties"]["model"]["anyOf"]
        assert {"$ref": "#/components/schemas/ModelName"} in choices
