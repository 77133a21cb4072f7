"""Parts 1 and 2: warm models, and end-to-end time against a direct call of the same engine."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import httpx

from bench.direct import DirectEngines
from bench.harness import (
    MULTILINGUAL,
    SHORT_AUDIO,
    JobRun,
    Options,
    median,
    run_job,
    run_openai_request,
)
from bench.report import Report, Row, Target

log = logging.getLogger(__name__)

OVERHEAD_TARGET = Target("max", 1.10)
WAKE_TARGET_MS = Target("max", 50.0, on_service=True)
SETTLE_S = 0.2
"""Pause between a service run and a direct run, so neither starts while the other winds down."""


def warm_models(report: Report, client: httpx.Client, options: Options) -> None:
    """First and second job of each engine on a fresh worker: only the first loads the model."""
    for engine in options.engines:
        first = run_job(client, SHORT_AUDIO, engine, options.model)
        second = run_job(client, SHORT_AUDIO, engine, options.model)
        first_load = float(first.result["timings"]["model_load_s"] or 0.0)
        second_load = float(second.result["timings"]["model_load_s"] or 0.0)
        report.add(
            Row(
                "warm models",
                f"{engine}: model load, first job on a worker (imports included)",
                "s",
                first_load,
            )
        )
        report.add(
            Row(
                "warm models",
                f"{engine}: model load, second job",
                "s",
                second_load,
                target=Target("max", 0.0, on_service=True),
            )
        )
        report.add(
            Row(
                "warm models",
                f"{engine}: first job, submit to result ({SHORT_AUDIO.name})",
                "s",
                first.total_s,
                reference=second.total_s,
                reference_label="second job",
            )
        )
        report.details.setdefault("warm_models", {})[engine] = {
            "first": _breakdown(first),
            "second": _breakdown(second),
        }


def _breakdown(run: JobRun) -> dict[str, Any]:
    timings: dict[str, Any] = dict(run.result.get("timings") or {})
    return {
        "job_id": run.job_id,
        "total_s": run.total_s,
        "submit_s": run.submit_s,
        "wake_lag_s": run.wake_lag_s,
        "worker_timings": timings,
    }


def service_overhead(
    report: Report, client: httpx.Client, direct: DirectEngines, options: Options
) -> str:
    """Submit-to-result through the service over a direct call, per engine and file.

    Service and direct runs alternate, one at a time, so they see the same machine and never
    overlap; the worker is idle while the direct call runs. Returns a finished job's id.
    """
    wake_lags: list[float] = []
    finished_job = ""
    for engine in options.engines:
        for audio in (SHORT_AUDIO, MULTILINGUAL):
            # One unmeasured round each: first decode of the format, first aligner lookup.
            finished_job = run_job(client, audio, engine, options.model).job_id
            direct.transcribe(engine, options.model, audio)
            run_openai_request(client, audio, engine, options.model)
            service_runs: list[JobRun] = []
            direct_s: list[float] = []
            openai_s: list[float] = []
            duration = 0.0
            for _ in range(options.runs):
                time.sleep(SETTLE_S)
                run = run_job(client, audio, engine, options.model)
                service_runs.append(run)
                time.sleep(SETTLE_S)
                elapsed, transcript = direct.transcribe(engine, options.model, audio)
                direct_s.append(elapsed)
                duration = transcript.duration
                time.sleep(SETTLE_S)
                openai_s.append(run_openai_request(client, audio, engine, options.model))
            wake_lags += [run.wake_lag_s for run in service_runs]
            service_s = median([run.total_s for run in service_runs])
            reference_s = median(direct_s)
            label = _audio_label(audio, duration)
            report.add(
                Row(
                    "overhead",
                    f"{engine}, {label}: submit to result",
                    "s",
                    service_s,
                    reference=reference_s,
                    reference_label="direct call",
                    target=OVERHEAD_TARGET,
                )
            )
            report.add(
                Row(
                    "overhead",
                    f"{engine}, {label}: POST /v1/audio/transcriptions, request to answer",
                    "s",
                    median(openai_s),
                    reference=reference_s,
                    reference_label="direct call",
                    target=OVERHEAD_TARGET,
                )
            )
            outside_ms = 1000 * median(
                [run.total_s - float(run.result["timings"]["total_s"]) for run in service_runs]
            )
            report.add(
                Row(
                    "overhead",
                    f"{engine}, {label}: service time outside the job function",
                    "ms",
                    outside_ms,
                    note="upload, probe, queue, result storage, long-poll",
                )
            )
            report.add(
                Row(
                    "scaling",
                    f"{engine} real-time factor, {label} (processing s per audio s)",
                    "",
                    service_s / duration,
                    reference=reference_s / duration,
                    reference_label="direct",
                )
            )
            report.details.setdefault("overhead", {})[f"{engine}/{audio.name}"] = {
                "audio_s": duration,
                "direct_s": direct_s,
                "openai_route_s": openai_s,
                "service": [_breakdown(run) for run in service_runs],
            }
    report.add(
        Row(
            "overhead",
            "long-poll answer after the job ends (median over every run)",
            "ms",
            median(wake_lags) * 1000,
            target=WAKE_TARGET_MS,
        )
    )
    return finished_job


def _audio_label(audio: Path, duration_s: float) -> str:
    return f"{audio.name} ({duration_s:.0f} s)"


def load_direct_engines(direct: DirectEngines, options: Options) -> dict[str, float]:
    """Load every engine in this process first: it also fills the model cache (conversions)."""
    return {engine: direct.load(engine, options.model) for engine in options.engines}
