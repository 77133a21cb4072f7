"""The webhook signature: its format, and what a receiver's check accepts and refuses."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from common.webhook_signing import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    signed_headers,
    verify,
)

SECRET = "s3cret"
BODY = b'{"job_id":"abc","status":"finished"}'
NOW = 1_800_000_000.0


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    headers = signed_headers(SECRET, "job-1", BODY, now=NOW)
    assert headers[ID_HEADER] == "job-1"
    assert headers[TIMESTAMP_HEADER] == "1800000000"
    expected = hmac.new(SECRET.encode(), b"1800000000." + BODY, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == f"sha256={expected}"


def test_receiver_accepts_a_fresh_delivery() -> None:
    headers = signed_headers(SECRET, "job-1", BODY, now=NOW)
    stamp = verify(SECRET, BODY, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], now=NOW + 5)
    assert stamp == int(NOW)


@pytest.mark.parametrize(
    ("secret", "body", "age_s", "message"),
    [
        ("other", BODY, 0, "does not match"),
        (SECRET, BODY + b" ", 0, "does not match"),
        (SECRET, BODY, 301, "outside"),
        (SECRET, BODY, -301, "outside"),
    ],
    ids=["wrong-secret", "altered-body", "replayed-late", "from-the-future"],
)
def test_receiver_refuses(secret: str, body: bytes, age_s: float, message: str) -> None:
    headers = signed_headers(SECRET, "job-1", BODY, now=NOW)
    with pytest.raises(SignatureError, match=message):
        verify(secret, body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], now=NOW + age_s)


def test_timestamp_is_part_of_what_is_signed() -> None:
    headers = signed_headers(SECRET, "job-1", BODY, now=NOW)
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, BODY, str(int(NOW) + 1), headers[SIGNATURE_HEADER], now=NOW)
    with pytest.raises(SignatureError, match="malformed"):
        verify(SECRET, BODY, None, headers[SIGNATURE_HEADER], now=NOW)
