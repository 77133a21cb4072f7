"""The benchmark's command line: parts in order, then BENCHMARKS.md, JSON and the README."""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.api_load import api_throughput
from bench.diarization import diarization
from bench.direct import DirectEngines
from bench.events import event_delay
from bench.findings import explain
from bench.harness import (
    SHORT_AUDIO,
    Options,
    deployment,
    http_client,
    load_average,
    restart_api,
    run_job,
    start_workers,
    stop_workers,
)
from bench.overhead import load_direct_engines, service_overhead, warm_models
from bench.report import Report, table, update_readme, write, write_json
from bench.scaling import scaling
from bench.uploads import API_LIMITS, measure_s3_upload, measure_upload
from common.catalog import EngineName
from config import Settings
from tests.audio import REPO_ROOT

log = logging.getLogger("bench")

RESULTS_DIR = REPO_ROOT / "bench-results"
BENCHMARKS_MD = REPO_ROOT / "BENCHMARKS.md"
README = REPO_ROOT / "README.md"
DEFAULT_MODELS = {"cpu": "tiny.en", "cuda": "large-v3"}
PARTS = ("overhead", "warm", "uploads", "api", "scaling", "events", "diarization")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure the service against direct engine calls; write BENCHMARKS.md.",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--model", help="Whisper model (default: tiny.en on cpu, large-v3 on cuda)")
    parser.add_argument(
        "--engines",
        default=",".join(engine.value for engine in EngineName),
        help="comma-separated engines to measure (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer runs: checks the harness")
    parser.add_argument(
        "--model-cache-dir",
        type=Path,
        default=RESULTS_DIR / "models",
        help="model cache shared by the bench process and the service (kept between runs)",
    )
    parser.add_argument("--no-readme", action="store_true", help="leave README.md's table as it is")
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=(
            f"comma-separated subset of {', '.join(PARTS)}; a subset writes only "
            "bench-results/results-partial.json, never BENCHMARKS.md or the README"
        ),
    )
    return parser.parse_args(argv)


def require_cuda(engines: tuple[str, ...]) -> None:
    """Exit with a clear message unless the libraries of the chosen engines see a CUDA device.

    Both engines need torch's CUDA; whisperx also needs CTranslate2's (a build against the
    machine's CUDA), so a machine where only torch sees the GPU can still measure `timestamped`.
    """
    import torch

    visible = {"torch": torch.cuda.is_available()}
    if EngineName.WHISPERX.value in engines:
        import ctranslate2

        visible["CTranslate2 (whisperx)"] = ctranslate2.get_cuda_device_count() > 0
    if blind := [library for library, sees in visible.items() if not sees]:
        sys.exit(
            f"--device cuda needs a CUDA GPU that {' and '.join(visible)} can use; "
            f"none is visible to {', '.join(blind)} here. Run on a GPU machine, choose other "
            "--engines, or use --device cpu."
        )


def machine(device: str) -> str:
    model = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    described = f"{model}, {len(os.sched_getaffinity(0))} cores, {memory_kib / 2**20:.0f} GiB"
    if device == "cuda":
        import torch

        described += f", {torch.cuda.get_device_name(0)}"
    return described


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (" + uncommitted changes" if git("status", "--porcelain") else "")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    model = args.model or DEFAULT_MODELS[args.device]
    engines = tuple(name.strip() for name in args.engines.split(",") if name.strip())
    if args.device == "cuda":
        require_cuda(engines)
    cores = len(os.sched_getaffinity(0))
    workdir = RESULTS_DIR / "work"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)

    options = Options(
        device=args.device,
        model=model,
        engines=engines,
        quick=args.quick,
        workdir=workdir,
        model_cache_dir=args.model_cache_dir.resolve(),
        cores=cores,
    )
    # Engine libraries are imported later, on first load: they must see what workers see.
    os.environ.update(options.env())
    load_at_start = os.getloadavg()[0]
    context: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(args.device),
        "commit": commit(),
        "device": args.device,
        "model": model,
        "engines": ", ".join(engines),
        "quick": args.quick,
    }
    context["load average (1 min) at start"] = f"{load_at_start:.2f}"
    parts = frozenset(part.strip() for part in args.parts.split(",") if part.strip())
    if unknown := parts - set(PARTS):
        sys.exit(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    report = Report(context=context)
    partial = RESULTS_DIR / "results-partial.json"
    try:
        run(options, report, parts)
    except BaseException:
        # Keep what was measured for diagnosis; BENCHMARKS.md keeps the last complete run.
        report.findings = ["the run stopped early (see the log)"]
        write_json(report, partial)
        raise
    context["load average (1/5/15 min) at end"] = load_average()
    report.findings = [*explain(report, load_at_start), *report.findings]
    if parts != set(PARTS):
        write_json(report, partial)
        log.info(
            "parts %s only:\n%s\nwrote %s", ", ".join(sorted(parts)), table(report.rows), partial
        )
        return 0
    results = write(report, BENCHMARKS_MD, RESULTS_DIR)
    if not args.no_readme and not update_readme(README, report):
        log.warning("README.md has no bench markers; its table was not updated")
    log.info("wrote %s and %s", BENCHMARKS_MD, results)
    return 0


def run(options: Options, report: Report, parts: frozenset[str]) -> None:
    """The chosen parts, in one deployment, in an order where no two measurements overlap."""
    with deployment(options) as service:
        if "uploads" in parts:
            log.info("part 3: a 1 GiB upload (API with one web worker, no transcription workers)")
            restart_api(service, 1, **API_LIMITS)
            measure_upload(service, report, options)
            for name in API_LIMITS:
                del service.env[name]
            log.info("part 3: the same upload into object storage (a real S3 server on loopback)")
            measure_s3_upload(service, report, options)
        restart_api(service, 2)
        if not parts & {"warm", "overhead", "scaling", "api", "events", "diarization"}:
            return
        direct: DirectEngines | None = None
        if "overhead" in parts:
            log.info("loading the engines in this process for the direct-call references")
            direct = DirectEngines(
                Settings(
                    device=options.device,
                    model_cache_dir=options.model_cache_dir,
                    cpu_threads=options.cores,
                )
            )
            report.details["direct_load_s"] = load_direct_engines(direct, options)
        start_workers(service, 1, options.cores)
        with http_client(service) as client:
            if "warm" in parts:
                log.info("part 2: warm models")
                warm_models(report, client, options)
            if direct is not None:
                log.info("part 1: service overhead against direct calls")
                finished_job = service_overhead(report, client, direct, options)
                direct.close()
            else:
                finished_job = run_job(
                    client, SHORT_AUDIO, options.engines[0], options.model
                ).job_id
            if "events" in parts:
                log.info("live events: segment decoded to SSE client")
                event_delay(report, client, options)
            if "diarization" in parts:
                log.info("speakers: diarization error rate and time")
                diarization(report, client, options)
            if "scaling" in parts:
                log.info("part 5: scaling")
                scaling(service, client, report, options)
        stop_workers(service)
        if "api" in parts:
            log.info("part 4: API throughput (no transcription workers)")
            api_throughput(service, report, options, finished_job)
