"""Part 5: jobs per second with one worker against two on the same cores."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import httpx

from bench.engine_ceiling import makespan as direct_makespan
from bench.harness import (
    SHORT_AUDIO,
    Options,
    await_end,
    start_workers,
    stop_workers,
    submit,
    worker_loads,
)
from bench.report import Report, Row, Target
from tests.services import Service

log = logging.getLogger(__name__)

SCALING_TARGET = Target("min", 1.6)
WARM_UP_ROUNDS = 3


@dataclass(frozen=True)
class Phase:
    """A worker layout: how many workers, each with how many inference threads."""

    workers: int
    threads: int

    @property
    def label(self) -> str:
        workers = f"{self.workers} worker{'s' if self.workers > 1 else ''}"
        return f"{workers} x {self.threads} thread{'s' if self.threads > 1 else ''}"


def makespan(client: httpx.Client, engine: str, model: str, jobs: int) -> float:
    """Seconds from the first submission until the last of `jobs` short jobs has ended."""
    started = time.perf_counter()
    job_ids = [submit(client, SHORT_AUDIO, engine, model) for _ in range(jobs)]
    for job_id in job_ids:
        status = await_end(client, job_id)
        if status["status"] != "finished":
            raise RuntimeError(f"scaling job {job_id} ended {status['status']}: {status['error']}")
    return time.perf_counter() - started


def warm_up(service: Service, client: httpx.Client, engine: str, model: str) -> None:
    """Run jobs until every worker has loaded `engine`'s model."""
    for _ in range(WARM_UP_ROUNDS):
        if all(worker_loads(service, engine)):
            return
        makespan(client, engine, model, 2 * len(service.workers))
    if not all(worker_loads(service, engine)):
        raise RuntimeError(f"not every worker loaded {engine}: {worker_loads(service, engine)}")


def measure(
    service: Service, client: httpx.Client, options: Options, phase: Phase
) -> dict[str, float]:
    """Start the phase's workers, warm them, and time each engine's batch of short jobs."""
    stop_workers(service)
    start_workers(service, phase.workers, phase.threads)
    seconds: dict[str, float] = {}
    for engine in options.engines:
        warm_up(service, client, engine, options.model)
        seconds[engine] = makespan(client, engine, options.model, options.scaling_jobs)
        log.info(
            "%s, %s: %d jobs in %.1f s", phase.label, engine, options.scaling_jobs, seconds[engine]
        )
    return seconds


def scaling(service: Service, client: httpx.Client, report: Report, options: Options) -> None:
    """One worker using every core against two workers with half the cores each (the target),
    beside the same two layouts of direct engine calls with no service (the engine's ceiling).

    Full runs add two comparisons that explain it: two workers against one with the same threads
    per worker (does the service itself scale?), and two workers that each use every core
    against two that share them (what oversubscription costs).
    """
    half = max(1, options.cores // 2)
    single, pair = Phase(1, options.cores), Phase(2, half)
    comparisons: list[tuple[Phase, Phase, Target | None]] = [(pair, single, SCALING_TARGET)]
    if not options.quick:
        comparisons += [(pair, Phase(1, half), None), (Phase(2, options.cores), pair, None)]
    phases = list(dict.fromkeys(phase for compared in comparisons for phase in compared[:2]))
    results = {phase: measure(service, client, options, phase) for phase in phases}
    stop_workers(service)
    jobs = options.scaling_jobs
    direct = {
        phase: {
            engine: direct_makespan(options, engine, phase.workers, phase.threads, jobs)
            for engine in options.engines
        }
        for phase in (single, pair)
    }
    report.details["scaling"] = {
        phase.label: {engine: {"jobs": jobs, "seconds": s} for engine, s in by_engine.items()}
        for phase, by_engine in results.items()
    }
    report.details["scaling_direct"] = {
        phase.label: {engine: {"jobs": jobs, "seconds": s} for engine, s in by_engine.items()}
        for phase, by_engine in direct.items()
    }

    def throughput(label: str, seconds: float, reference_s: float, reference_label: str) -> Row:
        return Row(
            "scaling",
            label,
            "jobs/s",
            jobs / seconds,
            reference=jobs / reference_s,
            reference_label=reference_label,
        )

    for engine in options.engines:
        ceiling = (
            f"{engine}: direct calls, no service: {jobs} x {SHORT_AUDIO.name}, "
            f"{_processes(pair)} vs {_processes(single)} (the engine's own ceiling)"
        )
        overhead = (
            f"{engine}: {jobs} x {SHORT_AUDIO.name}, service with {pair.label} vs direct "
            f"calls in {_processes(pair)}"
        )
        for row in (
            (ceiling, direct[pair][engine], direct[single][engine], _processes(single)),
            (overhead, results[pair][engine], direct[pair][engine], f"direct, {_processes(pair)}"),
        ):
            report.add(throughput(*row))
        report.findings.append(_ceiling(engine, results, direct, single, pair))
        for measured, baseline, target in comparisons:
            report.add(
                Row(
                    "scaling",
                    f"{engine}: {jobs} x {SHORT_AUDIO.name}, {measured.label} vs {baseline.label}",
                    "jobs/s",
                    jobs / results[measured][engine],
                    reference=jobs / results[baseline][engine],
                    reference_label=baseline.label,
                    target=target,
                )
            )


def _processes(phase: Phase) -> str:
    """The phase's label for direct calls: processes instead of workers."""
    return phase.label.replace("worker", "process").replace("processs", "processes")


def _ceiling(
    engine: str,
    results: dict[Phase, dict[str, float]],
    direct: dict[Phase, dict[str, float]],
    single: Phase,
    pair: Phase,
) -> str:
    """What two workers can gain at best (the engine called directly in as many processes),
    and how much of it the service keeps."""
    ceiling = direct[single][engine] / direct[pair][engine]
    achieved = results[single][engine] / results[pair][engine]
    return (
        f"Scaling, {engine}: called directly with no service, {_processes(pair)} each run "
        f"{ceiling:.2f}x the jobs of {_processes(single)}: that is the most a second worker can "
        f"add on these cores, "
        f"because one job already gains from a second thread. Through the service, "
        f"{pair.label} reach {achieved:.2f}x {single.label}, {achieved / ceiling:.0%} of it."
    )
