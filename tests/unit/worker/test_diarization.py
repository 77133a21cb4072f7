"""Diarization in the job, on fakeredis with the fake engine and fake backends: labels in the
result, the backend's choice (auto falls back, an explicit unavailable one fails the job), and
the offline check of whether pyannote can load."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import get_args

import pytest
from rq import Queue

from api.jobs.queue import enqueue_transcription
from common.catalog import EngineName
from common.contract import JobRequest, TranscribeOptions, load_job
from common.job_status import describe_job
from common.transcript import Transcript
from config import Settings
from tests.audio import write_tone_wav
from tests.fakes import FAKE_ENGINES, work
from worker.diarization import AUTO, BUNDLED, DIARIZERS, load_diarizer
from worker.diarization.base import DiarizationUnavailableError, DiarizerContext
from worker.diarization.fake import FakeDiarizer
from worker.diarization.pyannote_backend import cached_pipeline, pipeline_source
from worker.runtime import Runtime

FALLBACK = {
    "pyannote": "worker.diarization.fake:UnavailableDiarizer",
    "resemblyzer": "worker.diarization.fake:FakeDiarizer",
}
"""pyannote that cannot load here, and a fake in place of the bundled backend."""

CONTEXT = DiarizerContext(device="cpu", model_cache_dir="/nonexistent", pyannote_pipeline="a/b")


def runtime_with(settings: Settings, backend: str) -> Runtime:
    settings.device = "cpu"
    settings.diarization_backend = backend  # type: ignore[assignment]
    FakeDiarizer.loads = 0
    return Runtime.from_settings(settings, engines=FAKE_ENGINES, diarizers=FALLBACK)


def enqueue(queue: Queue, settings: Settings, audio: Path, **options: object) -> str:
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    job_id = str(uuid.uuid4())
    target = settings.upload_dir / f"{job_id}{audio.suffix}"
    shutil.copy(audio, target)
    request = JobRequest(
        audio_path=str(target),
        engine=EngineName.WHISPERX,
        model="tiny.en",
        options=TranscribeOptions.model_validate(options),
    )
    enqueue_transcription(
        queue, settings, job_id=job_id, request=request, duration_s=1.0, callback_url=None
    )
    return job_id


def result_of(queue: Queue, job_id: str) -> Transcript:
    status = describe_job(load_job(queue, job_id))  # type: ignore[arg-type]
    assert status.status == "finished", status.error
    assert status.result is not None
    return status.result


def test_auto_falls_back_to_the_bundled_backend_and_labels_the_transcript(
    worker_settings: Settings, queue: Queue, tone_wav: Path, tmp_path: Path
) -> None:
    runtime = runtime_with(worker_settings, "auto")
    long_tone = write_tone_wav(tmp_path / "four-seconds.wav", seconds=4.0)
    first = enqueue(queue, worker_settings, long_tone, diarize=True, num_speakers=2)
    second = enqueue(queue, worker_settings, tone_wav, diarize=True)
    work(queue, runtime)
    result = result_of(queue, first)
    assert result.diarization_backend == "resemblyzer"
    assert any("pyannote cannot load" in note for note in result.notes)
    assert result.speakers == ["SPEAKER_00", "SPEAKER_01"]
    words = result.segments[0].words
    assert [word.speaker for word in words] == ["SPEAKER_00"] * 2 + ["SPEAKER_01"] * 2
    assert result.timings.diarize_s > 0
    assert result_of(queue, second).diarization_backend == "resemblyzer"
    assert FakeDiarizer.loads == 1


def test_a_job_without_diarize_has_no_speakers_and_loads_no_backend(
    worker_settings: Settings, queue: Queue, tone_wav: Path
) -> None:
    runtime = runtime_with(worker_settings, "auto")
    job_id = enqueue(queue, worker_settings, tone_wav)
    work(queue, runtime)
    result = result_of(queue, job_id)
    assert (result.speakers, result.diarization_backend) == ([], None)
    assert result.segments[0].speaker is None
    assert FakeDiarizer.loads == 0


def test_silence_gives_no_speakers_and_a_note(
    worker_settings: Settings, queue: Queue, tmp_path: Path
) -> None:
    silence = tmp_path / "silence.wav"
    silence.write_bytes(_silent_wav(1.0))
    runtime = runtime_with(worker_settings, "resemblyzer")
    job_id = enqueue(queue, worker_settings, silence, diarize=True)
    work(queue, runtime)
    result = result_of(queue, job_id)
    assert result.speakers == []
    assert "diarization found no speech: no speaker labels" in result.notes


def test_an_explicit_backend_that_cannot_load_fails_the_job_saying_why(
    worker_settings: Settings, queue: Queue, tone_wav: Path
) -> None:
    runtime = runtime_with(worker_settings, "pyannote")
    job_id = enqueue(queue, worker_settings, tone_wav, diarize=True)
    work(queue, runtime)
    job = load_job(queue, job_id)
    assert job is not None
    status = describe_job(job)
    assert status.status == "failed"
    assert status.error == "pyannote cannot load: fake backend, never available"
    assert job.retries_left == 0


def test_pyannote_without_token_or_cached_pipeline_is_refused_at_once(tmp_path: Path) -> None:
    context = DiarizerContext(
        device="cpu",
        model_cache_dir=str(tmp_path),
        pyannote_pipeline="pyannote/speaker-diarization-community-1",
    )
    started = time.monotonic()
    with pytest.raises(DiarizationUnavailableError, match="no HF_TOKEN"):
        load_diarizer("pyannote", context)
    assert time.monotonic() - started < 1.0  # decided from the file system, no network


def test_pyannote_loads_from_a_cached_snapshot_or_a_local_folder(tmp_path: Path) -> None:
    snapshot = tmp_path / "models--org--pipe" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.yaml").write_text("pipeline: {}\n")
    assert cached_pipeline("org/pipe", str(tmp_path)) == snapshot
    assert cached_pipeline(str(snapshot), "/nonexistent") == snapshot
    assert cached_pipeline("org/other", str(tmp_path)) is None
    with_token = DiarizerContext("cpu", str(tmp_path), "org/other", hf_token="hf_x")
    assert pipeline_source(with_token) == "org/other"
    assert pipeline_source(DiarizerContext("cpu", str(tmp_path), "org/pipe")) == str(snapshot)


def test_unknown_backend_names_the_ones_there_are() -> None:
    with pytest.raises(LookupError, match="pyannote, resemblyzer"):
        load_diarizer("nemo", CONTEXT)


def _silent_wav(seconds: float) -> bytes:
    import io
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16_000)
        handle.writeframes(b"\0\0" * int(16_000 * seconds))
    return buffer.getvalue()


def test_the_setting_offers_exactly_the_registered_backends_and_auto() -> None:
    offered = set(get_args(Settings.model_fields["diarization_backend"].annotation))
    assert offered == {AUTO, *DIARIZERS}
    assert BUNDLED in DIARIZERS
