"""Upload → Redis/RQ → warm worker → whisperx transcript, with real processes and weights."""

from __future__ import annotations

import httpx
import pytest
import srt
import webvtt

from tests.audio import JFK, JFK_PHRASE, normalize
from tests.services import Service, submit, wait_for_job, wait_until

pytestmark = pytest.mark.integration


def test_jfk_is_transcribed_over_http(client: httpx.Client, service: Service) -> None:
    job_id = submit(client, JFK, "whisperx")
    status = wait_for_job(client, job_id)
    assert status["status"] == "finished", status
    result = status["result"]
    assert JFK_PHRASE in normalize(result["text"])
    assert result["engine"] == "whisperx"
    assert result["model"] == "tiny.en"
    assert result["language"] == "en"
    assert result["duration"] == pytest.approx(11.0, abs=0.05)
    assert result["segments"]
    assert status["engine"] == "whisperx"
    assert status["started_at"]
    assert status["ended_at"]
    assert status["progress"] == {"stage": "done", "percent": 100.0}
    timings = result["timings"]
    assert timings["transcribe_s"] > 0
    assert timings["queue_wait_s"] is not None
    # The worker deletes the upload once the result is stored, a moment after /status shows it.
    wait_until(lambda: not any(service.upload_dir.iterdir()), 5, "the upload to be deleted")


def test_second_job_on_a_warm_worker_loads_no_model(client: httpx.Client, service: Service) -> None:
    """The second of two jobs on the same model loads nothing (the worker is shared by the
    session: earlier tests may have loaded, or evicted, models before the first)."""
    first = wait_for_job(client, submit(client, JFK))["result"]
    log_before_second = len(service.workers[0].log())
    second = wait_for_job(client, submit(client, JFK))["result"]
    assert all(JFK_PHRASE in normalize(result["text"]) for result in (first, second))
    assert second["timings"]["model_load_s"] == 0.0
    during_second = service.workers[0].log()[log_before_second:]
    assert "loaded ModelSpec(" not in during_second, during_second[-2000:]
    assert "Job OK" in during_second


def test_results_download_as_subtitles(client: httpx.Client) -> None:
    job_id = submit(client, JFK)
    assert wait_for_job(client, job_id)["status"] == "finished"
    srt_response = client.get(f"/result/{job_id}", params={"format": "srt"})
    assert srt_response.status_code == 200
    assert srt_response.headers["content-type"].startswith("application/x-subrip")
    assert f'filename="{job_id}.srt"' in srt_response.headers["content-disposition"]
    cues = list(srt.parse(srt_response.text))
    assert cues
    assert JFK_PHRASE in normalize(" ".join(cue.content for cue in cues))
    vtt_response = client.get(f"/result/{job_id}", params={"format": "vtt"})
    captions = webvtt.from_string(vtt_response.text).captions
    assert JFK_PHRASE in normalize(" ".join(caption.text for caption in captions))
    text = client.get(f"/result/{job_id}", params={"format": "txt"}).text
    assert JFK_PHRASE in normalize(text)


def test_model_that_cannot_be_loaded_fails_fast_with_a_clear_error(
    client: httpx.Client,
) -> None:
    job_id = submit(client, JFK, "whisperx", model="base.en")
    status = wait_for_job(client, job_id, timeout_s=60)
    assert status["status"] == "failed"
    assert "base.en" in status["error"]
    assert "Traceback" not in status["error"]
    assert client.get(f"/result/{job_id}").status_code == 409


def test_unknown_job_is_404(client: httpx.Client) -> None:
    assert client.get("/status/00000000-0000-4000-8000-000000000000").status_code == 404
    assert client.get("/result/not-a-job").status_code == 404
