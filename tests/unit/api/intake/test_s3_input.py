"""Which s3:// URLs the server takes as input: listed buckets, plain keys, never its own uploads.

Refusals happen before any request to the store (tests/integration/test_object_storage.py
takes the accepted ones through a real S3 server)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.errors import InvalidField
from api.intake.s3_input import is_s3_url, parse_input_url
from config import Settings


@pytest.fixture
def readable(settings: Settings) -> Settings:
    settings.s3_input_buckets = ["recordings", "uploads"]
    settings.s3_bucket = "uploads"
    return settings


def test_a_listed_bucket_and_a_plain_key_are_taken(readable: Settings) -> None:
    assert parse_input_url("s3://recordings/2026/talk one.mp3", readable) == (
        "recordings",
        "2026/talk one.mp3",
    )
    assert parse_input_url("s3://uploads/archive/talk.mp3", readable) == (
        "uploads",
        "archive/talk.mp3",
    )
    assert is_s3_url("S3://recordings/a.mp3")
    assert not is_s3_url("https://recordings/a.mp3")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("s3://elsewhere/talk.mp3", "is not one this server reads"),
        ("s3://recordings/a/../b.mp3", "'..' segment"),
        ("s3://recordings/../uploads/x", "'..' segment"),
        ("s3://recordings/..", "'..' segment"),
        ("s3://recordings/a/./b.mp3", "'..' segment"),
        ("s3://recordings/a//b.mp3", "'..' segment"),
        ("s3://recordings/a/", "'..' segment"),
        ("s3://recordings/a\x00b", "control characters"),
        ("s3://recordings/a\nb", "control characters"),
        (f"s3://recordings/{'k' * 1025}", "longer than 1024 bytes"),
        ("s3://recordings/", "names no object key"),
        ("s3://recordings", "names no object key"),
        ("s3:///talk.mp3", "name a bucket"),
        ("s3://re..cordings/talk.mp3", "name a bucket"),
        ("s3://UPPER/talk.mp3", "name a bucket"),
        ("s3://user@recordings/talk.mp3", "name a bucket"),
        ("s3://uploads/uploads/0b6e0a52-8a4f-4b4e-9a3c-4f1d2e3c4b5a", "its own uploads"),
    ],
)
def test_other_urls_are_refused_on_the_url_field(readable: Settings, url: str, reason: str) -> None:
    with pytest.raises(InvalidField) as refused:
        parse_input_url(url, readable)
    assert refused.value.field == "url"
    assert reason in refused.value.detail


def test_without_input_buckets_every_s3_url_is_refused(settings: Settings) -> None:
    with pytest.raises(InvalidField, match="takes no s3:// input"):
        parse_input_url("s3://recordings/talk.mp3", settings)


def test_the_route_refuses_before_anything_is_read(client: TestClient) -> None:
    response = client.post(
        "/transcribe/url", json={"url": "s3://recordings/talk.mp3", "engine": "whisperx"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "url"]
    assert "S3_INPUT_BUCKETS" in response.json()["detail"][0]["msg"]
