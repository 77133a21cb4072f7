"""The `transcribe` command against the real stack: folders to SRT files, reruns, interrupted
batches resumed, lines off a terminal and bars on one, errors and exit statuses."""

from __future__ import annotations

import asyncio
import os
import re
import selectors
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import httpx
import pexpect  # type: ignore[import-untyped]  # its stubs (types-pexpect) are not installed
import pytest
import srt
from transcribe_client.batch import Batch, Outcome, Request
from transcribe_client.inputs import find_sources, plan
from transcribe_client.service import Service as Service_

from tests.audio import JFK, JFK_PHRASE, SHARED_DATA, normalize
from tests.hostile import clip
from tests.services import VENV_BIN, Service
from tests.unit.client.fakes import RecordingReporter

pytestmark = pytest.mark.integration

TRANSCRIBE = str(VENV_BIN / "transcribe")
MEETING = SHARED_DATA / "meeting_dev00.wav"
JOB_LINE = re.compile(r"^(?P<label>\S+): job (?P<job_id>[0-9a-f-]{36}) submitted", re.MULTILINE)


def environment(service: Service, api_key: str | None = None) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("TRANSCRIBE_")}
    env["TRANSCRIBE_URL"] = service.url
    if api_key is not None:
        env["TRANSCRIBE_API_KEY"] = api_key
    return env


def transcribe(
    service: Service, *args: str, env: Mapping[str, str] | None = None, timeout_s: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run the console script, its output a pipe (no terminal)."""
    return subprocess.run(
        [TRANSCRIBE, *args],
        env=dict(env or environment(service)),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def job_ids(service: Service) -> set[str]:
    with service.client() as http:
        return {job["job_id"] for job in http.get("/jobs", params={"limit": 100}).json()["jobs"]}


def folder_of_three(folder: Path, start_s: float) -> Path:
    """jfk.flac and two shorter clips of it (from `start_s`), as a folder of recordings."""
    folder.mkdir()
    shutil.copy(JFK, folder / "jfk.flac")
    clip(JFK, folder / "opening.wav", 3.0, start_s)
    clip(JFK, folder / "closing.mp3", 4.0, start_s + 6.0)
    return folder


def test_a_folder_becomes_srt_files_and_a_rerun_submits_nothing(
    service: Service, tmp_path: Path
) -> None:
    recordings = folder_of_three(tmp_path / "recordings", 0.0)
    before = job_ids(service)
    run = transcribe(service, "submit", str(recordings), "--format", "srt", "--jobs", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    for name in ("jfk.flac", "opening.wav", "closing.mp3"):
        # Off a terminal, one line per change of state, in order, for every input.
        own = [line.removeprefix(f"{name}: ") for line in lines if line.startswith(f"{name}: ")]
        assert own[0].startswith("uploading ")
        assert re.match(r"job [0-9a-f-]{36} submitted, queued", own[1]), own
        assert own[-2:] == ["finished", f"done: {recordings / name.rsplit('.')[0]}.srt"], own
    assert lines[-1] == "3 inputs: 3 done"
    cues = list(srt.parse((recordings / "jfk.srt").read_text()))
    assert JFK_PHRASE in normalize(" ".join(cue.content for cue in cues))
    assert list(srt.parse((recordings / "opening.srt").read_text()))
    submitted = job_ids(service) - before
    assert len(submitted) == 3

    rerun = transcribe(service, "submit", str(recordings), "--format", "srt")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert rerun.stdout.splitlines()[-1] == "3 inputs: 3 skipped"
    assert job_ids(service) - before == submitted, "the rerun submitted nothing"

    job_id = next(match["job_id"] for match in JOB_LINE.finditer(run.stdout))
    status = transcribe(service, "status", job_id)
    assert status.returncode == 0
    assert status.stdout.startswith(f"job {job_id}: finished")
    result = transcribe(service, "result", job_id, "--format", "vtt")
    assert result.returncode == 0
    assert result.stdout.startswith("WEBVTT")
    listed = transcribe(service, "jobs", "--status", "finished", "--limit", "100")
    assert job_id in listed.stdout
    cancel = transcribe(service, "cancel", job_id)
    assert cancel.returncode == 1
    assert "has already ended (finished): nothing to cancel" in cancel.stderr


def read_until(process: subprocess.Popen[str], pattern: str, timeout_s: float) -> str:
    """The process's output up to the first line matching `pattern`, within the deadline."""
    assert process.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(deadline - time.monotonic()):
                break
            line = process.stdout.readline()
            if not line:
                break
            seen += line
            if re.search(pattern, line):
                return seen
    raise AssertionError(f"no line matching {pattern!r} in time; the output was:\n{seen}")


def test_an_interrupted_batch_resumes_without_transcribing_anything_twice(
    service: Service, tmp_path: Path
) -> None:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    clip(JFK, recordings / "a_first.wav", 3.0, 1.0)
    shutil.copy(MEETING, recordings / "b_long.wav")  # 30 s: still running at the interrupt
    clip(JFK, recordings / "c_last.mp3", 4.0, 5.0)
    before = job_ids(service)
    command = [TRANSCRIBE, "submit", str(recordings), "--format", "txt", "--jobs", "1"]
    process = subprocess.Popen(
        command, env=environment(service), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        read_until(process, r"^b_long\.wav: job .* submitted", 120)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    assert "run the same command again to resume" in stderr
    assert (recordings / "a_first.txt").exists()
    assert not (recordings / "b_long.txt").exists()
    assert not (recordings / "c_last.txt").exists()

    resumed = transcribe(service, "submit", str(recordings), "--format", "txt", "--jobs", "1")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    lines = resumed.stdout.splitlines()
    assert "a_first.wav: skipped: " in "\n".join(lines)
    assert any(re.match(r"b_long\.wav: job \S+ submitted earlier", line) for line in lines), lines
    assert any(re.match(r"c_last\.mp3: job \S+ submitted, ", line) for line in lines), lines
    assert lines[-1] == "3 inputs: 2 done, 1 skipped"
    assert len(job_ids(service) - before) == 3, "each file was transcribed once"
    assert "americans" in (recordings / "a_first.txt").read_text().lower()


def test_a_terminal_gets_progress_bars(service: Service, tmp_path: Path) -> None:
    session = pexpect.spawn(
        TRANSCRIBE,
        ["submit", str(JFK), "--engine", "timestamped", "--format", "json", "--out", str(tmp_path)],
        env=environment(service),
        dimensions=(24, 120),
        encoding="utf-8",
        timeout=120,
    )
    session.expect("all inputs")
    session.expect("━")  # a bar
    session.expect(r"\d+%")
    session.expect("✓ .*jfk.flac")
    session.expect(pexpect.EOF)
    session.close()
    assert session.exitstatus == 0, session.before
    assert "1 input: 1 done" in str(session.before)
    assert JFK_PHRASE in normalize((tmp_path / "jfk.json").read_text())


def test_a_failed_job_is_reported_with_its_reason(service: Service, tmp_path: Path) -> None:
    audio = clip(JFK, tmp_path / "short.wav", 2.0)
    run = transcribe(service, "submit", str(audio), "--model", "base.en")
    assert run.returncode == 1, run.stdout + run.stderr
    failed = [line for line in run.stdout.splitlines() if "short.wav: failed: job " in line]
    assert failed, run.stdout
    assert "base.en" in failed[0]
    assert run.stdout.splitlines()[-1] == "1 input: 1 failed"
    assert not (tmp_path / "short.txt").exists()


def test_refused_options_are_a_usage_error_with_the_servers_words(
    service: Service, tmp_path: Path
) -> None:
    audio = clip(JFK, tmp_path / "short.wav", 2.0)
    run = transcribe(service, "submit", str(audio), "--option", "beam_size=99")
    assert run.returncode == 2, run.stdout + run.stderr
    assert "the server answered 422: beam_size: " in run.stderr


def test_no_wait_submits_and_cancel_stops(service: Service, tmp_path: Path) -> None:
    long = tmp_path / "meeting.wav"
    shutil.copy(MEETING, long)
    run = transcribe(service, "submit", str(long), "--no-wait", "--option", "beam_size=3")
    assert run.returncode == 0, run.stdout + run.stderr
    match = re.search(r"meeting\.wav: submitted: job (?P<job_id>\S+)$", run.stdout, re.MULTILINE)
    assert match is not None, run.stdout
    assert run.stdout.splitlines()[-1] == "1 input: 1 submitted"
    cancel = transcribe(service, "cancel", match["job_id"])
    assert cancel.returncode == 0, cancel.stderr
    assert re.match(rf"job {match['job_id']} (canceled|is stopping)", cancel.stdout)


def test_a_wrong_key_gets_the_servers_message(keyed_service: Service, tmp_path: Path) -> None:
    audio = clip(JFK, tmp_path / "short.wav", 2.0)
    wrong = environment(keyed_service, "tsk_not-a-key")
    for args in (["jobs"], ["submit", str(audio)]):
        run = transcribe(keyed_service, *args, env=wrong)
        assert run.returncode == 1, run.stdout + run.stderr
        assert run.stderr.strip() == (
            "transcribe: the server answered 401: the API key is unknown or has been revoked"
        )
    listed = transcribe(
        keyed_service, "jobs", env=environment(keyed_service, keyed_service.admin_key)
    )
    assert listed.returncode == 0, listed.stderr


class RecordingTransport(httpx.AsyncHTTPTransport):
    """The real transport, keeping the path of every request sent."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await super().handle_async_request(request)


def test_a_running_job_is_followed_through_the_real_events_stream(
    service: Service, tmp_path: Path
) -> None:
    audio = tmp_path / "events.wav"
    shutil.copy(MEETING, audio)  # 30 s: long enough to be still running after a first long-poll
    items = plan(find_sources([str(audio)]), ("txt",), None)
    transport = RecordingTransport()
    reporter = RecordingReporter()

    async def go() -> Counter[Outcome]:
        async with Service_(service.url, transport=transport) as client:
            request = Request("whisperx", options=(("beam_size", "2"),))
            outcomes = await Batch(client, request, reporter).run(items)
            assert client.has_events is True
            return outcomes

    assert asyncio.run(go()) == Counter({Outcome.DONE: 1})
    streams = [path for path in transport.paths if path.endswith("/events")]
    assert len(streams) == 1, transport.paths
    job_id = streams[0].split("/")[2]
    # Long-polled only while queued: the stream brought the rest, the end included.
    assert transport.paths.index(streams[0]) == len(transport.paths) - 2, transport.paths
    assert transport.paths[-1] == f"/result/{job_id}"
    stages = [state for state in reporter.of("job") if state.startswith("started ")]
    assert any(state.startswith("started transcribing") for state in stages), reporter.seen
    assert "finished" in reporter.of("job")
    assert "ready to begin" in normalize((tmp_path / "events.txt").read_text())
