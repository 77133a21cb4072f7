"""Plain-language notes drawn from a run's details: where time went, and what to distrust."""

from __future__ import annotations

import os
from typing import Any

from bench.harness import median
from bench.report import Report

BUSY_LOAD_PER_CORE = 0.25
"""A one-minute load average above this share of the cores at the start marks a noisy run."""


def _overhead_note(name: str, data: dict[str, Any]) -> str:
    runs: list[dict[str, Any]] = data["service"]
    total = median([run["total_s"] for run in runs])
    direct = median(data["direct_s"])
    submit = median([run["submit_s"] for run in runs])
    wake = median([run["wake_lag_s"] for run in runs])
    queued = median([run["worker_timings"].get("queue_wait_s") or 0.0 for run in runs])
    worker = median([run["worker_timings"].get("total_s") or 0.0 for run in runs])
    return (
        f"{name}: service {total * 1000:.0f} ms against direct {direct * 1000:.0f} ms "
        f"({(total - direct) * 1000:+.0f} ms). Medians: upload + probe + enqueue "
        f"{submit * 1000:.0f} ms, queue wait {queued * 1000:.0f} ms, worker job function "
        f"{worker * 1000:.0f} ms, job end to long-poll answer {wake * 1000:.0f} ms."
    )


def explain(report: Report, load_at_start: float) -> list[str]:
    """Findings for BENCHMARKS.md."""
    notes: list[str] = []
    cores = len(os.sched_getaffinity(0))
    if load_at_start > BUSY_LOAD_PER_CORE * cores:
        notes.append(
            f"The machine was busy when the run started (load average {load_at_start:.2f} on "
            f"{cores} cores): other processes shared the CPU, so ratios carry that noise."
        )
    for name, data in report.details.get("overhead", {}).items():
        notes.append(_overhead_note(name, data))
    scaling: dict[str, dict[str, dict[str, float]]] = report.details.get("scaling", {})
    if scaling:
        layouts = "; ".join(
            f"{layout}: "
            + ", ".join(f"{engine} {data['seconds']:.1f} s" for engine, data in by_engine.items())
            for layout, by_engine in scaling.items()
        )
        notes.append(f"Scaling batches (time for all jobs): {layouts}.")
    missed = [row for row in report.rows if row.met is False]
    if missed:
        notes.append("Missed: " + "; ".join(f"{row.part}: {row.measure}" for row in missed) + ".")
    return notes
