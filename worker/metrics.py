"""A worker's Prometheus metrics, served on WORKER_METRICS_PORT: its jobs' times, its models,
its GPU memory, its webhook deliveries (and, from `common.metrics`, the job counters)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from rq.job import Job, JobStatus

from common.metrics import JOBS_RETRIED, count_end, job_labels
from worker.engines.base import ModelSpec

log = logging.getLogger(__name__)

LABELS = ["engine", "model"]

# Seconds, from a short clip on a warm GPU to hours of audio on a CPU.
JOB_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)

QUEUE_WAIT = Histogram(
    "transcribe_queue_wait_seconds",
    "From a job's (last) enqueue to its start on this worker.",
    LABELS,
    buckets=(0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 14400),
)
MODEL_LOAD = Histogram(
    "transcribe_model_load_seconds",
    "Loading a model into this worker (a preload, or a job's first use; imports included).",
    LABELS,
    buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
)
DECODE = Histogram(
    "transcribe_decode_seconds",
    "Decoding a job's upload to 16 kHz mono samples (ffmpeg).",
    LABELS,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
TRANSCRIPTION = Histogram(
    "transcribe_transcription_seconds",
    "The engine's own work on a finished job: transcription plus word alignment.",
    LABELS,
    buckets=JOB_BUCKETS,
)
JOB_DURATION = Histogram(
    "transcribe_job_duration_seconds",
    "A finished job on this worker: model load, decode, transcription and any diarization.",
    LABELS,
    buckets=JOB_BUCKETS,
)
AUDIO = Counter(
    "transcribe_audio_seconds_total",
    "Seconds of audio in the jobs this worker finished.",
    LABELS,
)
REAL_TIME_FACTOR = Histogram(
    "transcribe_real_time_factor",
    "Per finished job, its duration over its audio's (below 1 is faster than real time).",
    LABELS,
    buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10),
)
MODEL_UNLOADS = Counter(
    "transcribe_model_unloads_total",
    "Models this worker let go: evicted (MAX_LOADED_MODELS) or idle (MODEL_IDLE_TTL_S).",
    [*LABELS, "reason"],
)
WEBHOOK_DELIVERIES = Counter(
    "transcribe_webhook_deliveries_total",
    "Webhook delivery attempts made by this worker, by outcome: delivered, retry, failed.",
    ["outcome"],
)
WORKER_BUSY = Gauge("transcribe_worker_busy", "1 while this worker runs a job, else 0.")
WORKER_READY = Gauge(
    "transcribe_worker_ready",
    "1 once this worker has loaded its PRELOAD_MODELS and takes jobs, else 0.",
)


def job_started(job: Job, now: datetime | None = None) -> None:
    """A job starts here: its wait since it was (last) enqueued."""
    if job.enqueued_at is None:
        return
    enqueued = job.enqueued_at
    if enqueued.tzinfo is None:
        enqueued = enqueued.replace(tzinfo=UTC)
    waited = ((now or datetime.now(UTC)) - enqueued).total_seconds()
    QUEUE_WAIT.labels(*job_labels(job)).observe(max(waited, 0.0))


def job_finished(job: Job, result: Any) -> None:
    """A job finished with `result`, the transcript's JSON data (its timings and duration)."""
    labels = job_labels(job)
    count_end(job, "finished")
    if not isinstance(result, dict):
        return
    timings: dict[str, Any] = result.get("timings") or {}
    duration = float(result.get("duration") or 0.0)
    total = _seconds(timings.get("total_s"))
    if (decode := _seconds(timings.get("decode_s"))) is not None:
        DECODE.labels(*labels).observe(decode)
    transcribe, align = _seconds(timings.get("transcribe_s")), _seconds(timings.get("align_s"))
    if transcribe is not None:
        TRANSCRIPTION.labels(*labels).observe(transcribe + (align or 0.0))
    if total is not None:
        JOB_DURATION.labels(*labels).observe(total)
    AUDIO.labels(*labels).inc(duration)
    if total is not None and duration > 0:
        REAL_TIME_FACTOR.labels(*labels).observe(total / duration)


def attempt_failed(job: Job) -> None:
    """An attempt failed and rq has decided (in memory): failed for good, stopped (a cancel),
    or queued again for another attempt."""
    status = job.get_status(refresh=False)
    if status == JobStatus.FAILED:
        count_end(job, "failed")
    elif status == JobStatus.STOPPED:
        count_end(job, "canceled")
    elif status in (JobStatus.QUEUED, JobStatus.SCHEDULED):
        JOBS_RETRIED.labels(*job_labels(job)).inc()


def model_loaded(spec: ModelSpec, load_s: float) -> None:
    """A model took `load_s` seconds to load."""
    MODEL_LOAD.labels(spec.engine, spec.model).observe(load_s)


def model_unloaded(spec: ModelSpec, reason: str) -> None:
    """A model was let go (`evicted` or `idle`)."""
    MODEL_UNLOADS.labels(spec.engine, spec.model, reason).inc()


def webhook_attempted(outcome: str) -> None:
    """One delivery attempt ended `delivered`, `retry` or `failed`."""
    WEBHOOK_DELIVERIES.labels(outcome).inc()


def _seconds(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


GpuMemory = Callable[[], list[tuple[str, int, int, int]]]
"""Per visible GPU: (device, bytes used on it by every process, its total, this process's)."""


def cuda_memory() -> list[tuple[str, int, int, int]]:
    """GPU memory per visible CUDA device, from the CUDA driver (torch): used is what the device
    has in use by every process (as nvidia-smi counts it), this process's is torch's reserve."""
    import torch  # the worker's own import; only asked on a CUDA worker

    readings: list[tuple[str, int, int, int]] = []
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        readings.append(
            (f"cuda:{index}", total - free, total, int(torch.cuda.memory_reserved(index)))
        )
    return readings


class RuntimeCollector(Collector):
    """At each scrape: the models this worker holds, and its GPUs' memory when on CUDA."""

    def __init__(self, loaded: Callable[[], list[ModelSpec]], gpu: GpuMemory | None) -> None:
        self._loaded = loaded
        self._gpu = gpu

    def collect(self) -> Iterator[GaugeMetricFamily]:
        models = GaugeMetricFamily(
            "transcribe_model_loaded",
            "1 for each model this worker holds in memory now (sum: models loaded).",
            labels=LABELS,
        )
        for spec in self._loaded():
            models.add_metric([spec.engine, spec.model], 1)
        yield models
        if self._gpu is None:
            return
        used = GaugeMetricFamily(
            "transcribe_gpu_memory_used_bytes",
            "GPU memory in use on the device, by every process.",
            labels=["device"],
        )
        total = GaugeMetricFamily(
            "transcribe_gpu_memory_total_bytes", "GPU memory of the device.", labels=["device"]
        )
        mine = GaugeMetricFamily(
            "transcribe_gpu_memory_reserved_bytes",
            "GPU memory torch holds for this worker (CTranslate2's own is in used only).",
            labels=["device"],
        )
        try:
            readings = self._gpu()
        except Exception:  # a scrape must not fail for a GPU that cannot be read
            log.exception("could not read GPU memory")
            readings = []
        for device, used_bytes, total_bytes, mine_bytes in readings:
            used.add_metric([device], used_bytes)
            total.add_metric([device], total_bytes)
            mine.add_metric([device], mine_bytes)
        yield from (used, total, mine)


def serve_metrics(
    port: int,
    loaded: Callable[[], list[ModelSpec]],
    gpu: GpuMemory | None,
    registry: CollectorRegistry = REGISTRY,
) -> None:
    """Serve `registry` (with the RuntimeCollector) over HTTP on every address at `port`, in a
    daemon thread."""
    registry.register(RuntimeCollector(loaded, gpu))
    # Every address, as a container's port must be: the metrics hold no job data.
    start_http_server(port, addr="0.0.0.0", registry=registry)
    log.info("metrics on :%d/metrics", port)
