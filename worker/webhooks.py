"""Webhook delivery: each worker process runs a thread that POSTs ended jobs' status JSON."""

# The thread claims due entries from the schedule in `common.webhooks`, signs the body
# (`common.webhook_signing`), sends it only to an address the outbound policy allows (checked at
# every attempt, since DNS may have changed since submission), and records how it went in the
# job's meta (`webhook`), where the job's status shows it. Redirects are not followed.
#
# Retried (with the backoff of `retry_delay_s`) after a connection error, a timeout, 408, 425, 429
# or a 5xx answer, until WEBHOOK_MAX_ATTEMPTS; any other answer, or a refused address, ends it as
# failed at once.

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import httpx
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.serializers import JSONSerializer

from common.contract import WebhookState, load_job, meta_of, store_meta
from common.job_status import describe_job
from common.outbound import OutboundPolicy, OutboundRefused, PinnedTransport, Unresolvable
from common.webhook_signing import signed_headers
from common.webhooks import claim_due, finish, postpone, retry_delay_s
from config import Settings
from worker import metrics

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0
"""How often an idle delivery thread looks for due webhooks."""

USER_AGENT = "transcribe-service-webhook/1"
RETRYABLE_STATUS_CODES = frozenset({408, 425, 429})
LEASE_SLACK_S = 30.0

Outcome = Literal["delivered", "retry", "failed", "gone"]


@dataclass(frozen=True)
class Attempt:
    """What one delivery attempt came to, and when to try again after a `retry`."""

    outcome: Outcome
    delay_s: float = 0.0


def _retryable(status_code: int) -> bool:
    return status_code in RETRYABLE_STATUS_CODES or status_code >= 500


Sender = Callable[[str, bytes, dict[str, str], OutboundPolicy, float], int]
"""POSTs (url, body, headers) within a timeout under a policy; returns the answer's status."""


def post_vetted(
    target_url: str, body: bytes, headers: dict[str, str], policy: OutboundPolicy, timeout_s: float
) -> int:
    """POST `body` to the vetted address of `target_url`; the answer's status (body unread)."""
    target = policy.vet(target_url)
    with (
        httpx.Client(
            transport=PinnedTransport(target),
            trust_env=False,
            follow_redirects=False,
            timeout=timeout_s,
        ) as client,
        client.stream("POST", target.url, content=body, headers=headers) as response,
    ):
        return response.status_code


def attempt_delivery(
    connection: Redis,
    queue_name: str,
    job_id: str,
    settings: Settings,
    policy: OutboundPolicy | None = None,
    send: Sender | None = None,
) -> Attempt:
    """Make one delivery attempt for the job and store its outcome in the job's meta."""
    job = load_job(Queue(queue_name, connection=connection, serializer=JSONSerializer), job_id)
    meta = meta_of(job) if job is not None else None
    if job is None or meta is None or not meta.callback_url:
        return Attempt("gone")
    url = meta.callback_url
    attempt = (meta.webhook.attempts if meta.webhook else 0) + 1
    now = datetime.now(UTC)
    status_code: int | None = None
    error: str | None = None
    retryable = False
    secret = settings.webhook_secret
    if secret is None:
        error = "WEBHOOK_SECRET is not set on the server, so the webhook cannot be signed"
    else:
        payload = describe_job(job).model_dump(mode="json", exclude={"webhook"})
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            **signed_headers(secret.get_secret_value(), job.id, body),
        }
        try:
            status_code = (send or post_vetted)(
                url,
                body,
                headers,
                policy or OutboundPolicy(settings.outbound_allowlist),
                settings.webhook_timeout_s,
            )
        except Unresolvable as unreachable:  # DNS may answer again by the next attempt
            error = unreachable.reason
            retryable = True
        except OutboundRefused as refused:
            error = f"refused: {refused.reason}"
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}"[:300] or type(failure).__name__
            retryable = True
        else:
            if not 200 <= status_code < 300:
                error = f"the receiver answered HTTP {status_code}"
                retryable = _retryable(status_code)
    state = WebhookState(
        attempts=attempt, last_attempt_at=now, last_status_code=status_code, last_error=error
    )
    result: Attempt
    if error is None:
        state.state, state.delivered_at = "delivered", now
        result = Attempt("delivered")
    elif retryable and attempt < settings.webhook_max_attempts:
        delay_s = retry_delay_s(settings, attempt)
        state.state, state.next_attempt_at = "retrying", now + timedelta(seconds=delay_s)
        result = Attempt("retry", delay_s)
    else:
        state.state = "failed"
        result = Attempt("failed")
    log.info("webhook of job %s, attempt %d: %s (%s)", job.id, attempt, result.outcome, error)
    if connection.exists(job.key):  # never recreate a job hash that expired meanwhile
        meta.webhook = state
        store_meta(job, meta)
    return result


def run_deliveries(
    connection: Redis,
    queue_name: str,
    settings: Settings,
    stop: threading.Event,
    policy: OutboundPolicy | None = None,
    send: Sender | None = None,
) -> None:
    """Deliver due webhooks of `queue_name` until `stop` is set (`send` posts each one)."""
    lease_s = settings.webhook_timeout_s + LEASE_SLACK_S
    while not stop.is_set():
        try:
            job_id = claim_due(connection, queue_name, lease_s)
        except RedisError as error:
            log.warning("webhook schedule unavailable: %s", error)
            stop.wait(POLL_INTERVAL_S)
            continue
        if job_id is None:
            stop.wait(POLL_INTERVAL_S)
            continue
        try:
            result = attempt_delivery(connection, queue_name, job_id, settings, policy, send)
            if result.outcome != "gone":
                metrics.webhook_attempted(result.outcome)
            if result.outcome == "retry":
                postpone(connection, queue_name, job_id, result.delay_s)
            else:
                finish(connection, queue_name, job_id)
        except RedisError as error:
            log.warning(
                "webhook of job %s: Redis failed (%s); retried after the lease", job_id, error
            )
        except Exception:
            log.exception("webhook of job %s could not be handled; dropped", job_id)
            with contextlib.suppress(RedisError):
                finish(connection, queue_name, job_id)


def start_webhook_thread(
    queue: Queue, settings: Settings, stop: threading.Event
) -> threading.Thread:
    """Run `run_deliveries` for the queue in a daemon thread."""
    thread = threading.Thread(
        target=run_deliveries,
        args=(queue.connection, queue.name, settings, stop),
        name="webhooks",
        daemon=True,
    )
    thread.start()
    return thread
