"""GET /jobs/{id}/events read by a plain SSE client (httpx-sse) on real engines and processes.

One job per engine on multilingual.mp3 (60 s: the English half, then the German one), each
followed from its submission by two clients at once: one reads every event to the end, noting
when each arrived; the other leaves after the first segment and comes back with Last-Event-ID.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from common.events import parse_entry_id
from tests.audio import JFK, SHARED_DATA
from tests.services import VENV_BIN, Service, submit, wait_for_job

pytestmark = pytest.mark.integration

log = logging.getLogger(__name__)

MULTILINGUAL = SHARED_DATA / "multilingual.mp3"
ENGINES = ("whisperx", "timestamped")
TERMINAL = {"finished", "failed", "canceled"}
READ_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Arrived:
    """One event as the client got it."""

    at: float
    """time.monotonic() when it arrived."""
    event: str
    id: str
    data: dict[str, Any]


@dataclass
class Reading:
    """What one connection got, and whether the server closed it."""

    events: list[Arrived] = field(default_factory=list)
    closed_by_server: bool = False

    def of(self, kind: str) -> list[Arrived]:
        return [event for event in self.events if event.event == kind]


def read(
    client: httpx.Client,
    job_id: str,
    last_event_id: str | None = None,
    leave_after_segment: bool = False,
) -> Reading:
    """Follow the job's events to the end (or to the first segment, then hang up)."""
    reading = Reading()
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    with connect_sse(client, "GET", f"/jobs/{job_id}/events", headers=headers) as source:
        assert source.response.status_code == 200
        for sse in source.iter_sse():
            arrived = Arrived(time.monotonic(), sse.event, sse.id, json.loads(sse.data))
            reading.events.append(arrived)
            if leave_after_segment and sse.event == "segment":
                return reading
        reading.closed_by_server = True
    return reading


@dataclass(frozen=True)
class Followed:
    """One job followed from its submission."""

    job_id: str
    whole: Reading
    before: Reading
    """The second client, up to its first segment."""
    after: Reading
    """The second client again, with Last-Event-ID of that segment."""
    result: dict[str, Any]


def follow(service: Service, engine: str) -> Followed:
    with httpx.Client(base_url=service.url, timeout=READ_TIMEOUT_S) as client:
        job_id = submit(client, MULTILINGUAL, engine)
        parts: dict[str, Reading] = {}

        def come_and_go() -> None:
            with httpx.Client(base_url=service.url, timeout=READ_TIMEOUT_S) as other:
                parts["before"] = read(other, job_id, leave_after_segment=True)
                resume = parts["before"].events[-1].id
                parts["after"] = read(other, job_id, last_event_id=resume)

        second = threading.Thread(target=come_and_go)
        second.start()
        whole = read(client, job_id)
        second.join(READ_TIMEOUT_S)
        result = client.get(f"/result/{job_id}", params={"format": "json"})
        assert result.status_code == 200, result.text
        return Followed(job_id, whole, parts["before"], parts["after"], result.json())


@pytest.fixture(scope="module", params=ENGINES)
def followed(request: pytest.FixtureRequest, service: Service) -> Followed:
    """A multilingual.mp3 job on each engine (default options), followed by two clients."""
    engine: str = request.param
    return follow(service, engine)


def transcribing_since(reading: Reading) -> float:
    """When the client first heard that the job was transcribing."""
    for event in reading.events:
        progress = event.data if event.event == "progress" else event.data.get("progress")
        if progress and progress.get("stage") in ("transcribing", "aligning", "done"):
            return event.at
    raise AssertionError("no event said the job was transcribing")


def words(text: str) -> list[str]:
    return text.split()


def test_segments_stream_in_order_during_the_transcription_and_make_the_transcript(
    followed: Followed,
) -> None:
    """Segments come as decoded, in order, and are the transcript; the stream then ends.

    The transcription span is measured from the events themselves, as the client saw them:
    from the first event saying the job is transcribing to the terminal status (so it holds
    VAD, decoding, the alignment attempt and storing the result, and no model load). Both
    engines decode a long file's first ~10 s on their own (whisperx a cut first VAD chunk,
    whisper-timestamped a first call up to a pause), so the first segment comes before half the
    span, as the issue asks, and the others follow while the job is still decoding.
    """
    whole = followed.whole
    assert whole.closed_by_server
    assert whole.events[0].event == "status"
    last = whole.events[-1]
    assert (last.event, last.data["status"]) == ("status", "finished")
    assert "result" not in last.data
    assert [event for event in whole.events if event.data.get("status") in TERMINAL] == [last]

    segments = whole.of("segment")
    assert [event.data["id"] for event in segments] == list(range(len(segments)))
    starts = [event.data["start"] for event in segments]
    assert starts == sorted(starts)
    assert all(set(event.data) >= {"id", "start", "end", "text", "words"} for event in segments)
    joined = " ".join(event.data["text"] for event in segments)
    assert words(joined) == words(followed.result["text"])
    assert [event.data["text"] for event in segments] == [
        segment["text"] for segment in followed.result["segments"]
    ]
    ids = [parse_entry_id(event.id) for event in whole.events[1:]]
    assert ids == sorted(ids)  # type: ignore[type-var]

    began = transcribing_since(whole)
    span = last.at - began
    first = segments[0].at - began
    log.info(
        "first segment at %.2f s of a %.2f s transcription span (%.0f %%)",
        first,
        span,
        100 * first / span,
    )
    decoding_after = [
        event
        for event in whole.of("progress")
        if event.at > segments[0].at and event.data["stage"] == "transcribing"
    ]
    assert decoding_after, (
        f"every segment came after decoding ended (first at {first:.2f} s of {span:.2f} s)"
    )
    assert segments[-1].at > segments[0].at, "all segments came at once"
    assert first < span / 2, f"the first segment came at {first:.2f} s of {span:.2f} s"


def test_last_event_id_resumes_with_exactly_the_rest(followed: Followed) -> None:
    before, after = followed.before, followed.after
    resumed_at = parse_entry_id(before.events[-1].id)
    assert resumed_at is not None
    assert after.closed_by_server
    assert all(parse_entry_id(event.id) > resumed_at for event in after.events)  # type: ignore[operator]
    rest = [event for event in followed.whole.events[1:] if parse_entry_id(event.id) > resumed_at]  # type: ignore[operator]
    assert [(event.id, event.event, event.data) for event in after.events] == [
        (event.id, event.event, event.data) for event in rest
    ]
    segment_ids = [event.data["id"] for event in before.of("segment") + after.of("segment")]
    assert segment_ids == list(range(len(followed.result["segments"])))
    assert after.events[-1].data["status"] == "finished"


def test_a_client_that_comes_after_the_end_gets_the_status_and_every_segment(
    followed: Followed, client: httpx.Client
) -> None:
    late = read(client, followed.job_id)
    assert late.closed_by_server
    assert late.events[0].event == "status"
    assert late.events[0].data["status"] == "finished"
    assert [event.data for event in late.of("segment")] == [
        event.data for event in followed.whole.of("segment")
    ]


def test_an_unknown_job_is_404(client: httpx.Client) -> None:
    response = client.get("/jobs/00000000-0000-4000-8000-000000000000/events")
    assert response.status_code == 404
    assert client.get("/jobs/nope/events").status_code == 404


def create_key(service: Service, name: str) -> str:
    done = subprocess.run(
        [str(VENV_BIN / "python"), "-m", "api.keys", "create", name],
        env={**os.environ, **service.env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture
def keyed_clients(keyed_service: Service) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """Clients of two new API keys on the keyed deployment."""
    secrets = [create_key(keyed_service, name) for name in ("events-owner", "events-other")]
    clients = [
        httpx.Client(
            base_url=keyed_service.url,
            timeout=READ_TIMEOUT_S,
            headers={"Authorization": f"Bearer {secret}"},
        )
        for secret in secrets
    ]
    try:
        yield clients[0], clients[1]
    finally:
        for http in clients:
            http.close()


def test_another_keys_job_events_are_404(keyed_clients: tuple[httpx.Client, httpx.Client]) -> None:
    owner, other = keyed_clients
    job_id = submit(owner, JFK)
    assert other.get(f"/jobs/{job_id}/events").status_code == 404
    reading = read(owner, job_id)
    assert reading.closed_by_server
    assert reading.events[-1].data["status"] == "finished"
    assert wait_for_job(owner, job_id)["status"] == "finished"
