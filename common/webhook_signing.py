"""Webhook signatures: HMAC-SHA256 over `<timestamp>.<body>`, so a receiver can refuse replays."""

# Each delivery carries three headers:
#
# - `X-Webhook-Id`: the job id (the same on every attempt; receivers can deduplicate on it);
# - `X-Webhook-Timestamp`: Unix seconds when this attempt was signed;
# - `X-Webhook-Signature`: `sha256=` and the hex HMAC-SHA256, keyed with WEBHOOK_SECRET, of the
#   timestamp, a `.`, and the raw request body.
#
# A receiver recomputes the HMAC over the bytes it received, compares in constant time, and
# refuses timestamps further than a few minutes from its clock (`verify` does all three).

from __future__ import annotations

import hashlib
import hmac
import time

ID_HEADER = "X-Webhook-Id"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
SIGNATURE_HEADER = "X-Webhook-Signature"
SCHEME = "sha256="
DEFAULT_TOLERANCE_S = 300


class SignatureError(ValueError):
    """A delivery's signature or timestamp does not check out."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Webhook-Signature` value for `body` signed at `timestamp`."""
    message = str(timestamp).encode("ascii") + b"." + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return SCHEME + digest


def signed_headers(
    secret: str, delivery_id: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    """The id, timestamp and signature headers for one delivery attempt."""
    timestamp = int(time.time() if now is None else now)
    return {
        ID_HEADER: delivery_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }


def verify(
    secret: str,
    body: bytes,
    timestamp_header: str | None,
    signature_header: str | None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> int:
    """Check a delivery as a receiver would; returns its timestamp, raises SignatureError."""
    if not timestamp_header or not timestamp_header.isdigit():
        raise SignatureError("missing or malformed timestamp")
    timestamp = int(timestamp_header)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise SignatureError(f"timestamp {timestamp} is outside the {tolerance_s:.0f} s window")
    expected = signature(secret, timestamp, body)
    if not signature_header or not hmac.compare_digest(expected, signature_header):
        raise SignatureError("signature does not match")
    return timestamp
