"""Speakers (issue 17): the bundled diarization backend's DER on real meetings and built
two-speaker recordings, and its time beside the transcription's in the same jobs."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import httpx

from bench.harness import Options, await_end
from bench.report import Report, Row, Target
from config import Settings
from tests.speaker_audio import (
    MEETINGS,
    Recording,
    diarization_error_rate,
    espeak_dialogue,
    meeting,
    stereo_in_turns,
    stereo_overlapping,
)
from worker.diarization import load_diarizer
from worker.diarization.base import DiarizerContext, SpeakerCount

log = logging.getLogger(__name__)

PART = "diarization"
MEETING_DER = Target("max", 0.40, on_service=True)
BUILT_DER = Target("max", 0.25, on_service=True)


def recordings(workdir: Path) -> list[tuple[Recording, Target | None]]:
    """The shared meetings and the built recordings, each with its DER target (none for the
    overlapping mix: a backend that gives one speaker at a time misses half of it)."""
    folder = workdir / "speakers"
    folder.mkdir(parents=True, exist_ok=True)
    return [
        *((meeting(name), MEETING_DER) for name in MEETINGS),
        (stereo_in_turns(), BUILT_DER),
        (stereo_overlapping(), None),
        (espeak_dialogue(folder), BUILT_DER),
    ]


def describe(recording: Recording) -> str:
    return f"{recording.name} ({recording.duration_s:.0f} s, {recording.speakers} speakers)"


def diarization(report: Report, client: httpx.Client, options: Options) -> None:
    """DER of the backend a worker would choose (DIARIZATION_BACKEND, `auto` here), called in
    this process on each recording, speakers estimated and then told; then one diarize=true
    job per engine and recording through the service, its diarize_s beside its transcribe_s
    (after a first job that loads the worker's backend)."""
    settings = Settings(device=options.device, model_cache_dir=options.model_cache_dir)
    token = settings.hf_token
    context = DiarizerContext(
        device=options.device,
        model_cache_dir=str(settings.model_cache_dir),
        pyannote_pipeline=settings.pyannote_pipeline,
        hf_token=None if token is None else token.get_secret_value(),
    )
    loaded = load_diarizer(settings.diarization_backend, context)
    report.details["diarization_backend"] = loaded.name
    cases = recordings(options.workdir)
    for recording, target in cases:
        started = time.perf_counter()
        turns = loaded.diarizer.diarize(recording.samples, SpeakerCount())
        elapsed = time.perf_counter() - started
        found = len({turn.speaker for turn in turns})
        told = loaded.diarizer.diarize(recording.samples, SpeakerCount(exact=recording.speakers))
        log.info("%s: %d speakers found in %.2f s", recording.name, found, elapsed)
        report.add(
            Row(
                PART,
                f"{loaded.name}, {describe(recording)}: DER, speakers estimated",
                "",
                diarization_error_rate(recording.reference, turns, recording.duration_s),
                target=target,
                note=f"{found} found",
            )
        )
        report.add(
            Row(
                PART,
                f"{loaded.name}, {describe(recording)}: DER, told the number of speakers",
                "",
                diarization_error_rate(recording.reference, told, recording.duration_s),
            )
        )
    warm_up = cases[0][0].write_wav(options.workdir / "diarization-warm-up.wav")
    diarized_job_timings(client, warm_up, options.engines[0], options.model)  # loads the backend
    for engine in options.engines:
        for recording, _ in cases:
            audio = recording.write_wav(options.workdir / f"{recording.name}.wav")
            timings = diarized_job_timings(client, audio, engine, options.model)
            report.add(
                Row(
                    PART,
                    f"{engine}, {describe(recording)}: diarization time vs transcription time",
                    "s",
                    timings["diarize_s"],
                    reference=timings["transcribe_s"],
                    reference_label="transcription, same job",
                )
            )


def diarized_job_timings(
    client: httpx.Client, audio: Path, engine: str, model: str
) -> dict[str, float]:
    """The timings of one diarize=true job; fails loudly unless it finished."""
    with audio.open("rb") as handle:
        response = client.post(
            "/transcribe",
            files={"file": (audio.name, handle)},
            data={"engine": engine, "model": model, "diarize": "true"},
        )
    response.raise_for_status()
    status = await_end(client, response.json()["job_id"])
    if status["status"] != "finished":
        raise RuntimeError(f"diarized job on {engine} ended {status['status']}: {status['error']}")
    timings: dict[str, float] = status["result"]["timings"]
    return timings
