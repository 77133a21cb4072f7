"""URL input, signed webhooks, cancel, progress and options over a real deployment.

A local HTTP server (on 127.0.0.1, allowed by OUTBOUND_ALLOWLIST) serves the audio and receives
the webhooks, checking their signatures as a client would. Refusals are checked with addresses
the service refuses before connecting, so no traffic goes anywhere but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.webhook_signing import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.audio import JFK, JFK_PHRASE, SHARED_DATA, normalize, write_tone_wav
from tests.services import Service, free_port, service_env, submit, wait_for_job, wait_until

pytestmark = pytest.mark.integration

SECRET = "integration-webhook-secret"
MAX_FILE_SIZE = 2 * 1024 * 1024
MULTILINGUAL = SHARED_DATA / "multilingual.mp3"
HOTWORDS = SHARED_DATA / "hotwords.mp3"


@dataclass
class Delivery:
    """A webhook as the receiver got it."""

    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """The test's HTTP server: audio to download, redirects, and webhook endpoints."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.fetched: list[str] = []
        self.failures_left = {"/hook/flaky": 1}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _send(self, code: int, body: bytes = b"", **headers: str) -> None:
                self.send_response(code)
                for name, value in headers.items():
                    self.send_header(name.replace("_", "-"), value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                with receiver.lock:
                    receiver.fetched.append(self.path)
                if self.path == "/audio/jfk.flac":
                    self._send(200, JFK.read_bytes(), Content_Type="audio/flac")
                elif self.path == "/audio/jfk":
                    self._send(200, JFK.read_bytes(), Content_Type="application/octet-stream")
                elif self.path == "/redirect/jfk":
                    self._send(302, Location="/audio/jfk")
                elif self.path == "/redirect/metadata":
                    self._send(302, Location="http://169.254.169.254/latest/meta-data/")
                elif self.path == "/redirect/private":
                    self._send(307, Location="http://10.255.0.1/audio.mp3")
                elif self.path == "/big":
                    self.send_response(200)  # no Content-Length: the cap applies while streaming
                    self.end_headers()
                    chunk = b"\0" * 65536
                    with contextlib.suppress(OSError):
                        for _ in range(MAX_FILE_SIZE // len(chunk) + 16):
                            self.wfile.write(chunk)
                    self.close_connection = True
                else:
                    self._send(404, b"not here")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.deliveries.append(Delivery(self.path, dict(self.headers), body))
                    failing = receiver.failures_left.get(self.path, 0) > 0
                    if failing:
                        receiver.failures_left[self.path] -= 1
                self._send(503 if failing else 204)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def to(self, path: str) -> list[Delivery]:
        with self.lock:
            return [delivery for delivery in self.deliveries if delivery.path == path]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """The local audio source and webhook receiver."""
    server = Receiver()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


@pytest.fixture(scope="module")
def jobs_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A deployment that may reach 127.0.0.1, signs webhooks, retries them after 1 s, and
    transcribes one VAD chunk per whisperx batch (progress, and stops, between chunks)."""
    root = tmp_path_factory.mktemp("jobs-service")
    port = free_port()
    env = {
        **service_env(root, port),
        "OUTBOUND_ALLOWLIST": "127.0.0.1",
        "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_RETRY_BASE_S": "1",
        "BATCH_SIZE": "1",
        "MAX_FILE_SIZE": str(MAX_FILE_SIZE),
        "CANCEL_WAIT_S": "20",
    }
    service = Service(root=root, env=env, redis_port=port)
    try:
        service.start_redis()
        service.start_worker()
        service.start_api()
        service.wait_for_workers(1)
        yield service
    finally:
        service.stop()


@pytest.fixture
def api(jobs_service: Service) -> Iterator[httpx.Client]:
    """An HTTP client for the deployment."""
    with httpx.Client(base_url=jobs_service.url, timeout=60) as http:
        yield http


def wait_for_webhook(api: httpx.Client, job_id: str, states: tuple[str, ...]) -> dict[str, Any]:
    def poll() -> dict[str, Any] | None:
        webhook: dict[str, Any] = api.get(f"/jobs/{job_id}").json()["webhook"]
        return webhook if webhook["state"] in states else None

    result: dict[str, Any] = wait_until(poll, 30, f"the webhook of {job_id} to be {states}", 0.2)
    return result


def test_url_input_through_a_redirect_with_a_signed_webhook(
    api: httpx.Client, receiver: Receiver, jobs_service: Service
) -> None:
    response = api.post(
        "/transcribe/url",
        json={
            "url": f"{receiver.url}/redirect/jfk",
            "engine": "whisperx",
            "callback_url": f"{receiver.url}/hook/jfk",
        },
    )
    assert response.status_code == 200, response.text
    job_id = response.json()["job_id"]
    assert response.headers["location"] == f"/status/{job_id}"
    assert receiver.fetched[-2:] == ["/redirect/jfk", "/audio/jfk"]
    status = wait_for_job(api, job_id)
    assert status["status"] == "finished", status
    assert JFK_PHRASE in normalize(status["result"]["text"])
    webhook = wait_for_webhook(api, job_id, ("delivered", "failed"))
    assert webhook["state"] == "delivered", webhook
    assert webhook["attempts"] == 1
    assert webhook["last_status_code"] == 204
    (delivery,) = receiver.to("/hook/jfk")
    verify(
        SECRET,
        delivery.body,
        delivery.headers[TIMESTAMP_HEADER],
        delivery.headers[SIGNATURE_HEADER],
    )
    assert delivery.headers[ID_HEADER] == job_id
    assert delivery.headers["Content-Type"] == "application/json"
    payload = json.loads(delivery.body)
    assert payload["job_id"] == job_id
    assert payload["status"] == "finished"
    assert JFK_PHRASE in normalize(payload["result"]["text"])
    assert not any(jobs_service.upload_dir.iterdir()), "the download outlived its job"


def test_webhook_is_retried_until_the_receiver_takes_it(
    api: httpx.Client, receiver: Receiver, tmp_path: Path
) -> None:
    tone = write_tone_wav(tmp_path / "tone.wav")
    job_id = submit(api, tone, callback_url=f"{receiver.url}/hook/flaky")
    assert wait_for_job(api, job_id)["status"] == "finished"
    webhook = wait_for_webhook(api, job_id, ("delivered", "failed"))
    assert (webhook["state"], webhook["attempts"]) == ("delivered", 2), webhook
    first, second = receiver.to("/hook/flaky")
    assert first.body == second.body
    for delivery in (first, second):
        verify(
            SECRET,
            delivery.body,
            delivery.headers[TIMESTAMP_HEADER],
            delivery.headers[SIGNATURE_HEADER],
        )
    assert int(second.headers[TIMESTAMP_HEADER]) >= int(first.headers[TIMESTAMP_HEADER]) + 1


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/redirect/metadata", "cloud metadata"), ("/redirect/private", "private")],
)
def test_redirect_to_a_refused_address_is_refused(
    api: httpx.Client, receiver: Receiver, jobs_service: Service, path: str, kind: str
) -> None:
    response = api.post("/transcribe/url", json={"url": receiver.url + path, "engine": "whisperx"})
    assert response.status_code == 422, response.text
    assert kind in response.json()["detail"][0]["msg"]
    assert receiver.fetched[-1] == path
    assert not any(jobs_service.upload_dir.iterdir())


def test_url_input_limits(api: httpx.Client, receiver: Receiver, jobs_service: Service) -> None:
    big = api.post("/transcribe/url", json={"url": f"{receiver.url}/big", "engine": "whisperx"})
    assert big.status_code == 413, big.text
    missing = api.post(
        "/transcribe/url", json={"url": f"{receiver.url}/nothing.mp3", "engine": "whisperx"}
    )
    assert missing.status_code == 502
    assert "404" in missing.json()["detail"]
    # Loopback over IPv6 is not on the allow-list: refused before any connection.
    port = receiver.url.rsplit(":", 1)[1]
    v6 = api.post("/transcribe/url", json={"url": f"http://[::1]:{port}/a", "engine": "whisperx"})
    assert v6.status_code == 422
    assert "loopback" in v6.json()["detail"][0]["msg"]
    assert not any(jobs_service.upload_dir.iterdir())


def test_url_input_with_an_idempotency_key_downloads_once(
    api: httpx.Client, receiver: Receiver
) -> None:
    body = {"url": f"{receiver.url}/audio/jfk.flac", "engine": "whisperx", "language": "en"}
    headers = {"Idempotency-Key": "url-retry-1"}
    first = api.post("/transcribe/url", json=body, headers=headers)
    assert first.status_code == 200, first.text
    downloads = receiver.fetched.count("/audio/jfk.flac")
    retry = api.post("/transcribe/url", json=body, headers=headers)
    assert retry.status_code == 200, retry.text
    assert retry.json()["job_id"] == first.json()["job_id"]
    assert retry.headers["idempotent-replayed"] == "true"
    assert receiver.fetched.count("/audio/jfk.flac") == downloads, "the retry downloaded again"
    other = api.post(
        "/transcribe/url", json={**body, "url": f"{receiver.url}/audio/jfk"}, headers=headers
    )
    assert other.status_code == 409, other.text
    assert first.json()["job_id"] in other.json()["detail"]
    assert wait_for_job(api, first.json()["job_id"])["status"] == "finished"


def test_cancel_a_queued_and_a_running_job(api: httpx.Client, jobs_service: Service) -> None:
    running = submit(api, MULTILINGUAL, "whisperx")
    # The second job queues behind a started one: under load the worker may take a moment to
    # claim the first, and until then it would be second in line, not first.
    wait_until(
        lambda: api.get(f"/jobs/{running}").json()["status"] == "started",
        60,
        "the first job to start",
        0.05,
    )
    queued = submit(api, JFK, "whisperx")
    waiting = api.get(f"/jobs/{queued}").json()
    assert waiting["status"] == "queued"
    assert waiting["queue_position"] == 1
    canceled = api.delete(f"/jobs/{queued}")
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    assert not list(jobs_service.upload_dir.glob(f"{queued}.*"))

    def progressing() -> dict[str, Any] | None:
        body: dict[str, Any] = api.get(f"/jobs/{running}").json()
        assert body["status"] == "started" or body["status"] == "queued", body
        progress = body["progress"] or {}
        if progress.get("stage") == "transcribing" and body["eta_s"] is not None:
            return body
        return None

    seen = wait_until(progressing, 90, "the running job to report progress and an ETA", 0.05)
    assert 0 < seen["progress"]["percent"] < 100
    assert seen["eta_s"] > 0
    stopped = api.delete(f"/jobs/{running}")
    assert stopped.status_code == 200, stopped.text
    body = stopped.json()
    assert body["status"] == "canceled"
    assert body["result"] is None
    assert api.get(f"/status/{running}").json()["status"] == "canceled"
    assert not any(jobs_service.upload_dir.iterdir())
    listed = api.get("/jobs", params={"status": "canceled"}).json()["jobs"]
    assert {running, queued} <= {item["job_id"] for item in listed}
    # Once ended, DELETE erases the job for good.
    assert api.delete(f"/jobs/{running}").status_code == 204
    assert api.get(f"/status/{running}").status_code == 404
    # The worker goes on with the next job.
    after = submit(api, JFK, "whisperx")
    assert wait_for_job(api, after)["status"] == "finished"
    assert api.delete(f"/jobs/{after}").status_code == 204
    assert api.get(f"/result/{after}").status_code == 404


def test_options_reach_whisperx(api: httpx.Client) -> None:
    job_id = submit(
        api,
        HOTWORDS,
        "whisperx",
        hotwords="ComfyUI",
        vad="false",
        word_timestamps="false",
        beam_size="2",
    )
    status = wait_for_job(api, job_id)
    assert status["status"] == "finished", status
    result = status["result"]
    assert "comfyui" in normalize(result["text"]), result["text"]
    assert any("VAD off" in note for note in result["notes"])
    assert any("word_timestamps=false" in note for note in result["notes"])
    assert all(not segment["words"] for segment in result["segments"])
