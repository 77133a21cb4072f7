"""The batch against a fake server: events or long-poll, resumes, retries, failures, stops."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path

import httpx
import pytest
from transcribe_client.batch import (
    EXIT_USAGE,
    Batch,
    Fatal,
    Outcome,
    Request,
    idempotency_key,
)
from transcribe_client.inputs import Item, find_sources, plan
from transcribe_client.service import Service

from api.jobs.idempotency import KEY_PATTERN
from tests.unit.client.fakes import FakeServer, RecordingReporter

REQUEST = Request(engine="whisperx", language="en", options=(("beam_size", "5"),))


def recordings(folder: Path, count: int) -> list[Item]:
    folder.mkdir(exist_ok=True)
    for number in range(count):
        (folder / f"take{number}.wav").write_bytes(b"RIFF" + bytes([number]) * 2000)
    return plan(find_sources([str(folder)]), ("srt", "txt"), None)


def run(
    server: FakeServer, items: list[Item], *, wait: bool = True, lanes: int = 2
) -> tuple[Counter[Outcome], RecordingReporter]:
    reporter = RecordingReporter()

    async def go() -> Counter[Outcome]:
        async with Service("http://fake", "tsk_key", transport=server.transport()) as service:
            return await Batch(service, REQUEST, reporter, wait=wait, lanes=lanes).run(items)

    return asyncio.run(go()), reporter


def test_the_key_depends_on_the_content_and_fields_only() -> None:
    key = idempotency_key("ab" * 32, {"engine": "whisperx", "language": "en"})
    assert re.fullmatch(KEY_PATTERN, key)
    assert key == idempotency_key("ab" * 32, {"language": "en", "engine": "whisperx"})
    assert key != idempotency_key("cd" * 32, {"engine": "whisperx", "language": "en"})
    assert key != idempotency_key("ab" * 32, {"engine": "timestamped", "language": "en"})


def test_a_running_job_is_followed_by_its_events_and_every_format_written(tmp_path: Path) -> None:
    server = FakeServer(with_events=True)
    items = recordings(tmp_path / "in", 3)
    outcomes, reporter = run(server, items)
    assert outcomes == Counter({Outcome.DONE: 3})
    for item in items:
        for fmt, path in item.outputs:
            assert path.read_text().startswith(f"{fmt} of ")
    # Long-polled while queued (the position moves), then streamed once running.
    assert len(server.calls("GET", "/status/")) == 3 * 2
    assert len(server.calls("GET", "/jobs/")) == 3
    assert "started transcribing 40.0" in reporter.of("job")
    assert reporter.of("uploading")[-1] == "2004/2004"
    assert {request.headers["Authorization"] for request in server.requests} == {"Bearer tsk_key"}
    upload = server.uploads[0]
    assert b'name="beam_size"' in upload
    assert b'name="language"' in upload


def test_without_an_events_route_jobs_are_long_polled(tmp_path: Path) -> None:
    server = FakeServer(with_events=False)
    outcomes, reporter = run(server, recordings(tmp_path / "in", 3), lanes=1)
    assert outcomes == Counter({Outcome.DONE: 3})
    assert len(server.calls("GET", "/jobs/")) == 1, "the missing route is asked about once"
    polls = server.calls("GET", "/status/")
    assert polls
    assert all(request.url.params["wait"] == "1.0" for request in polls)
    assert "queued" in reporter.of("job")
    assert "started transcribing 50.0" in reporter.of("job")


def test_a_rerun_skips_what_is_written_and_reuses_the_jobs_submitted(tmp_path: Path) -> None:
    server = FakeServer()
    items = recordings(tmp_path / "in", 3)
    run(server, items[:1])
    items[1].outputs[0][1].write_text("an earlier run's srt")
    run(server, items[1:2], wait=False)
    outcomes, reporter = run(server, items)
    assert outcomes == Counter({Outcome.SKIPPED: 1, Outcome.DONE: 2})
    assert len(server.jobs) == 3, "no file was transcribed twice"
    assert items[1].outputs[0][1].read_text() == "an earlier run's srt"
    assert items[1].outputs[1][1].exists(), "only the missing format was fetched"
    assert any("reused" in state for state in reporter.of("job"))


def test_a_job_that_failed_before_is_submitted_afresh(tmp_path: Path) -> None:
    server = FakeServer(end="failed", error="ffmpeg could not decode the file")
    items = recordings(tmp_path / "in", 1)
    outcomes, reporter = run(server, items)
    assert outcomes == Counter({Outcome.FAILED: 1})
    assert "ffmpeg could not decode the file" in reporter.of("failed")[0]
    first = set(server.jobs)
    server.end = "finished"
    outcomes, _ = run(server, items)
    assert outcomes == Counter({Outcome.DONE: 1})
    assert len(server.calls("DELETE", "/jobs/")) == 1
    assert set(server.jobs).isdisjoint(first)


def test_limits_are_waited_out(tmp_path: Path) -> None:
    limited = httpx.Response(
        429, json={"detail": "active jobs limit: 4 jobs"}, headers={"Retry-After": "0"}
    )
    server = FakeServer(answers=[limited])
    outcomes, reporter = run(server, recordings(tmp_path / "in", 1))
    assert outcomes == Counter({Outcome.DONE: 1})
    assert reporter.of("waiting") == ["0 active jobs limit: 4 jobs"]


def test_a_refused_key_stops_the_batch(tmp_path: Path) -> None:
    refused = httpx.Response(401, json={"detail": "the API key is unknown or has been revoked"})
    server = FakeServer(answers=[refused] * 5)
    with pytest.raises(Fatal, match="unknown or has been revoked") as stopped:
        run(server, recordings(tmp_path / "in", 5), lanes=1)
    assert stopped.value.exit_code == 1
    assert len(server.calls("POST", "/transcribe")) == 1


def test_refused_fields_are_a_usage_error(tmp_path: Path) -> None:
    invalid = httpx.Response(
        422, json={"detail": [{"loc": ["body", "beam_size"], "msg": "must be at most 10"}]}
    )
    server = FakeServer(answers=[invalid])
    with pytest.raises(Fatal, match="beam_size: must be at most 10") as stopped:
        run(server, recordings(tmp_path / "in", 2), lanes=1)
    assert stopped.value.exit_code == EXIT_USAGE


def test_a_file_the_server_refuses_fails_alone(tmp_path: Path) -> None:
    not_audio = httpx.Response(415, json={"detail": "the file is not audio"})
    server = FakeServer(answers=[not_audio])
    outcomes, reporter = run(server, recordings(tmp_path / "in", 2), lanes=1)
    assert outcomes == Counter({Outcome.FAILED: 1, Outcome.DONE: 1})
    assert reporter.of("failed") == ["the server answered 415: the file is not audio"]


def test_urls_are_submitted_for_the_server_to_download(tmp_path: Path) -> None:
    server = FakeServer()
    items = plan(find_sources(["https://example.com/talks/keynote.mp3"]), ("txt",), tmp_path)
    outcomes, _ = run(server, items)
    assert outcomes == Counter({Outcome.DONE: 1})
    assert (tmp_path / "keynote.txt").exists()
    assert b'"url":"https://example.com/talks/keynote.mp3"' in server.uploads[0].replace(b" ", b"")
