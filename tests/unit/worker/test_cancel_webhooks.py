"""The worker side of cancel and webhooks, on fakeredis with the fake engine.

Stopping goes through rq's own `stop-job` command over (fake) pub/sub; webhook attempts use a
hand-written sender, so no request leaves the process.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from pydantic import SecretStr
from rq import Queue
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation
from rq.job import Job
from rq.job import JobStatus as RQStatus

from common.cancellation import request_cancel
from common.contract import Keys, load_job, meta_of, store_meta
from common.job_status import describe_job
from common.outbound import IPAddress, OutboundPolicy, Unresolvable
from common.webhook_signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from common.webhooks import claim_due, schedule_delivery
from config import Settings
from tests.fakes import enqueue_audio, jobs_queue, work
from worker.engines.fake import FakeEngine
from worker.maintenance import run_maintenance
from worker.rq_worker import TranscriptionWorker
from worker.runtime import Runtime
from worker.webhooks import attempt_delivery, run_deliveries

SECRET = "webhook-test-secret"
HOOK = "https://hooks.example.com/transcripts"


@pytest.fixture
def worker_settings(settings: Settings) -> Settings:
    """CPU settings with a webhook secret and a fast retry base."""
    settings.device = "cpu"
    settings.webhook_secret = SecretStr(SECRET)
    settings.webhook_retry_base_s = 10
    settings.webhook_max_attempts = 3
    return settings


def fetch(queue: Queue, job_id: str) -> Job:
    job = load_job(queue, job_id)
    assert job is not None
    return job


def test_job_canceled_as_a_worker_takes_it_never_runs(
    runtime: Runtime, queue: Queue, tone_wav: Path
) -> None:
    job = enqueue_audio(queue, runtime.settings, tone_wav, callback_url=HOOK)
    request_cancel(
        queue.connection, job, 60
    )  # the API's key, set just before the worker dequeued it
    work(queue, runtime)
    status = describe_job(fetch(queue, job.id))
    assert status.status == "canceled"
    assert status.result is None
    assert status.error is None
    assert FakeEngine.loads == 0
    assert list(runtime.settings.upload_dir.iterdir()) == []
    assert queue.connection.zrange(Keys(queue.name).webhooks_due, 0, -1) == [job.id.encode()]


def test_running_job_stops_on_rqs_stop_command(
    runtime: Runtime, queue: Queue, tone_wav: Path
) -> None:
    job = enqueue_audio(queue, runtime.settings, tone_wav, sleep_s=1.5)
    follower = enqueue_audio(queue, runtime.settings, tone_wav)
    sent = threading.Event()

    def stop_when_started() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if fetch(queue, job.id).get_status() == RQStatus.STARTED:
                try:
                    send_stop_job_command(queue.connection, job.id, serializer=queue.serializer)
                except InvalidJobOperation:  # started, but not yet registered to its worker
                    time.sleep(0.01)
                    continue
                sent.set()
                return
            time.sleep(0.01)

    stopper = threading.Thread(target=stop_when_started)
    stopper.start()
    work(queue, runtime)
    stopper.join()
    assert sent.is_set()
    stopped = describe_job(fetch(queue, job.id))
    assert stopped.status == "canceled"
    assert stopped.result is None
    assert not Path(job.kwargs["audio_path"]).exists()
    assert describe_job(fetch(queue, follower.id)).status == "finished"


def test_finished_job_with_callback_is_scheduled_once(
    runtime: Runtime, queue: Queue, tone_wav: Path
) -> None:
    job = enqueue_audio(queue, runtime.settings, tone_wav, callback_url=HOOK)
    plain = enqueue_audio(queue, runtime.settings, tone_wav)
    work(queue, runtime)
    assert describe_job(fetch(queue, job.id)).status == "finished"
    assert queue.connection.zrange(Keys(queue.name).webhooks_due, 0, -1) == [job.id.encode()]
    assert schedule_delivery(fetch(queue, job.id), runtime.settings) is False
    assert schedule_delivery(fetch(queue, plain.id), runtime.settings) is False


def test_abandoned_job_that_fails_for_good_gets_its_webhook(
    runtime: Runtime, queue: Queue, tone_wav: Path
) -> None:
    runtime.settings.job_retries = 0
    job = enqueue_audio(queue, runtime.settings, tone_wav, callback_url=HOOK)
    doomed = TranscriptionWorker(
        [jobs_queue(queue), queue],
        connection=queue.connection,
        serializer=queue.serializer,
        runtime=runtime,
    )
    jobs = jobs_queue(queue)
    dequeued = jobs.dequeue_any(
        [jobs], None, connection=queue.connection, serializer=queue.serializer
    )
    assert dequeued is not None
    doomed.prepare_execution(dequeued[0])
    doomed.prepare_job_execution(dequeued[0])
    later = time.time() + runtime.settings.heartbeat_ttl_s + 1
    run_maintenance(queue, runtime.settings, now=later)
    assert describe_job(fetch(queue, job.id)).status == "failed"
    assert queue.connection.zrange(Keys(queue.name).webhooks_due, 0, -1) == [job.id.encode()]


class FakeReceiver:
    """Answers each POST with the next status code (or raises), and keeps what it got."""

    def __init__(self, answers: list[int | Exception]) -> None:
        self.answers = answers
        self.received: list[tuple[str, bytes, dict[str, str]]] = []

    def __call__(
        self, url: str, body: bytes, headers: dict[str, str], policy: OutboundPolicy, timeout: float
    ) -> int:
        del timeout
        policy.vet(url)
        self.received.append((url, body, headers))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def public_dns(host: str, port: int) -> list[IPAddress]:
    del port
    answers = {"hooks.example.com": "93.184.216.34", "internal.example.com": "10.0.0.9"}
    if host not in answers:
        raise Unresolvable(f"host {host!r} cannot be resolved")
    return [ipaddress.ip_address(answers[host])]


@pytest.fixture
def ended_job(runtime: Runtime, queue: Queue, tone_wav: Path) -> Job:
    """A finished job that asked for a webhook."""
    job = enqueue_audio(queue, runtime.settings, tone_wav, callback_url=HOOK)
    work(queue, runtime)
    return fetch(queue, job.id)


def deliver(
    queue: Queue, settings: Settings, job: Job, receiver: FakeReceiver
) -> tuple[str, dict[str, Any]]:
    attempt = attempt_delivery(
        queue.connection, queue.name, job.id, settings, OutboundPolicy((), public_dns), receiver
    )
    state = describe_job(fetch(queue, job.id)).webhook
    assert state is not None
    return attempt.outcome, state.model_dump()


def test_delivery_is_signed_status_json(
    queue: Queue, worker_settings: Settings, ended_job: Job
) -> None:
    receiver = FakeReceiver([200])
    outcome, state = deliver(queue, worker_settings, ended_job, receiver)
    assert outcome == "delivered"
    url, body, headers = receiver.received[0]
    assert url == HOOK
    verify(SECRET, body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER])
    payload = json.loads(body)
    assert payload["job_id"] == ended_job.id
    assert payload["status"] == "finished"
    assert payload["result"]["text"] == "w0"
    assert "webhook" not in payload
    assert state["state"] == "delivered"
    assert state["attempts"] == 1
    assert state["last_status_code"] == 200
    assert isinstance(state["delivered_at"], datetime)


def test_delivery_retries_with_backoff_then_gives_up(
    queue: Queue, worker_settings: Settings, ended_job: Job
) -> None:
    receiver = FakeReceiver([503, OSError("connection reset")])
    outcome, state = deliver(queue, worker_settings, ended_job, receiver)
    assert (outcome, state["state"], state["attempts"]) == ("retry", "retrying", 1)
    assert state["last_status_code"] == 503
    assert state["next_attempt_at"] is not None
    receiver.answers = [429, 500]
    outcome, state = deliver(queue, worker_settings, ended_job, receiver)
    assert (outcome, state["attempts"]) == ("retry", 2)
    outcome, state = deliver(queue, worker_settings, ended_job, receiver)
    assert (outcome, state["state"], state["attempts"]) == ("failed", "failed", 3)
    assert state["next_attempt_at"] is None
    bodies = {body for _, body, _ in receiver.received}
    assert len(bodies) == 1, "every attempt carries the same body"


@pytest.mark.parametrize("code", [400, 401, 404, 301])
def test_client_errors_are_not_retried(
    queue: Queue, worker_settings: Settings, ended_job: Job, code: int
) -> None:
    outcome, state = deliver(queue, worker_settings, ended_job, FakeReceiver([code]))
    assert (outcome, state["state"], state["last_status_code"]) == ("failed", "failed", code)


@pytest.mark.parametrize(
    ("host", "expected", "reason"),
    [
        ("internal.example.com", ("failed", "failed"), "private"),  # refused for good
        ("gone.example.com", ("retry", "retrying"), "cannot be resolved"),  # DNS may come back
    ],
)
def test_a_callback_host_that_changed_is_not_sent_to(
    queue: Queue,
    worker_settings: Settings,
    ended_job: Job,
    host: str,
    expected: tuple[str, str],
    reason: str,
) -> None:
    meta = meta_of(ended_job)
    meta.callback_url = f"https://{host}/hook"
    store_meta(ended_job, meta)
    receiver = FakeReceiver([200])
    outcome, state = deliver(queue, worker_settings, ended_job, receiver)
    assert (outcome, state["state"]) == expected
    assert reason in state["last_error"]
    assert receiver.received == []


def test_delivery_without_a_secret_fails_unsent(
    queue: Queue, worker_settings: Settings, ended_job: Job
) -> None:
    worker_settings.webhook_secret = None
    receiver = FakeReceiver([200])
    outcome, state = deliver(queue, worker_settings, ended_job, receiver)
    assert outcome == "failed"
    assert "WEBHOOK_SECRET" in state["last_error"]
    assert receiver.received == []


def test_claims_are_leased(redis: fakeredis.FakeRedis) -> None:
    redis.zadd(Keys("q").webhooks_due, {"a": 100.0, "b": 200.0})
    assert claim_due(redis, "q", lease_s=50, now=150.0) == "a"
    assert claim_due(redis, "q", lease_s=50, now=150.0) is None  # a is leased till 200
    assert claim_due(redis, "q", lease_s=50, now=201.0) == "a"  # lease over: a deliverer died
    assert claim_due(redis, "q", lease_s=50, now=201.0) == "b"


def test_delivery_thread_delivers_due_webhooks(
    queue: Queue, worker_settings: Settings, ended_job: Job
) -> None:
    receiver = FakeReceiver([502, 200])
    worker_settings.webhook_retry_base_s = 0
    stop = threading.Event()
    policy = OutboundPolicy((), public_dns)
    thread = threading.Thread(
        target=run_deliveries,
        args=(queue.connection, queue.name, worker_settings, stop, policy, receiver),
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(receiver.received) < 2:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
    webhook = describe_job(fetch(queue, ended_job.id)).webhook
    assert webhook is not None
    assert (webhook.state, webhook.attempts) == ("delivered", 2)
    assert queue.connection.zcard(Keys(queue.name).webhooks_due) == 0
