"""A worker's metrics, its warm models (preloaded, idle-unloaded) and its device, on fakes."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue

from common.catalog import Route
from common.contract import load_job
from common.job_status import describe_job
from config import Settings
from tests.fakes import enqueue_audio, jobs_queue, work
from worker.cache import ModelCache
from worker.engines.base import ModelSpec
from worker.engines.fake import FAILING_MODEL, FakeEngine
from worker.maintenance import run_maintenance
from worker.metrics import RuntimeCollector, webhook_attempted
from worker.models import pin_device
from worker.rq_worker import TranscriptionWorker
from worker.runtime import Runtime, start_idle_unloader

TINY = {"engine": "whisperx", "model": "tiny.en"}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_finished_job_is_counted_and_timed(
    queue: Queue, runtime: Runtime, tone_wav: Path
) -> None:
    before = {
        name: sample(name, **TINY)
        for name in (
            "transcribe_queue_wait_seconds_count", "transcribe_decode_seconds_count",
            "transcribe_transcription_seconds_count", "transcribe_job_duration_seconds_count",
            "transcribe_real_time_factor_count", "transcribe_audio_seconds_total",
            "transcribe_model_load_seconds_count",
        )
    }  # fmt: skip
    finished = sample("transcribe_jobs_ended_total", **TINY, status="finished")
    enqueue_audio(queue, runtime.settings, tone_wav)
    enqueue_audio(queue, runtime.settings, tone_wav)
    work(queue, runtime)
    assert sample("transcribe_jobs_ended_total", **TINY, status="finished") - finished == 2
    grown = {name: sample(name, **TINY) - was for name, was in before.items()}
    assert grown.pop("transcribe_model_load_seconds_count") == 1  # warm for the second job
    assert grown.pop("transcribe_audio_seconds_total") == pytest.approx(2.0)  # two 1 s tones
    assert set(grown.values()) == {2}
    assert sample("transcribe_worker_busy") == 0


def test_failures_and_retries_are_counted_apart(
    queue: Queue, runtime: Runtime, tone_wav: Path
) -> None:
    broken = {"engine": "whisperx", "model": FAILING_MODEL}
    failed = sample("transcribe_jobs_ended_total", **broken, status="failed")
    enqueue_audio(queue, runtime.settings, tone_wav, model=FAILING_MODEL)
    work(queue, runtime)
    assert sample("transcribe_jobs_ended_total", **broken, status="failed") - failed == 1

    retried = sample("transcribe_jobs_retried_total", **TINY)
    failed = sample("transcribe_jobs_ended_total", **TINY, status="failed")
    enqueue_audio(queue, runtime.settings, tone_wav)
    jobs = jobs_queue(queue)
    for _ in range(runtime.settings.job_retries + 1):  # taken, and its worker dies each time
        doomed = TranscriptionWorker(
            [jobs, queue], connection=queue.connection, serializer=queue.serializer,
            runtime=runtime,
        )  # fmt: skip
        dequeued = jobs.dequeue_any(
            [jobs], None, connection=queue.connection, serializer=queue.serializer
        )
        assert dequeued is not None
        doomed.prepare_execution(dequeued[0])
        doomed.prepare_job_execution(dequeued[0])
        later = time.time() + runtime.settings.heartbeat_ttl_s + 1
        run_maintenance(queue, runtime.settings, now=later)
    assert sample("transcribe_jobs_retried_total", **TINY) - retried == runtime.settings.job_retries
    assert sample("transcribe_jobs_ended_total", **TINY, status="failed") - failed == 1


def test_webhook_attempts_are_counted_by_outcome() -> None:
    before = sample("transcribe_webhook_deliveries_total", outcome="retry")
    webhook_attempted("retry")
    assert sample("transcribe_webhook_deliveries_total", outcome="retry") - before == 1


def spec(model: str) -> ModelSpec:
    return ModelSpec(engine="whisperx", model=model, device="cpu", compute_type="int8")


class Loads:
    """A loader of stand-in engines that records what was loaded, released and let go."""

    def __init__(self) -> None:
        self.loaded: list[str] = []
        self.unloaded: list[tuple[str, str]] = []
        self.releases = 0

    def __call__(self, what: ModelSpec) -> FakeEngine:
        self.loaded.append(what.model)
        return FakeEngine(what, None)  # type: ignore[arg-type]

    def cache(self, capacity: int) -> ModelCache:
        def release() -> None:
            self.releases += 1

        def unloaded(what: ModelSpec, reason: str) -> None:
            self.unloaded.append((what.model, reason))

        return ModelCache(self, capacity, on_unload=unloaded, release=release)


def test_preloaded_models_stay_while_others_are_evicted() -> None:
    loads = Loads()
    cache = loads.cache(capacity=2)
    assert cache.pin(spec("large-v3")) >= 0
    cache.get(spec("tiny"))
    cache.get(spec("base"))  # evicts tiny, not the older but pinned large-v3
    assert loads.unloaded == [("tiny", "evicted")]
    assert [each.model for each in cache.loaded()] == ["large-v3", "base"]
    _, load_s = cache.get(spec("large-v3"))
    assert load_s == 0.0
    assert loads.loaded == ["large-v3", "tiny", "base"]


def test_idle_models_go_after_the_ttl_but_never_mid_job() -> None:
    loads = Loads()
    cache = loads.cache(capacity=3)
    cache.pin(spec("kept"))
    cache.get(spec("tiny"))
    now = time.monotonic()
    assert cache.unload_idle(60, now=now + 30) == []
    with cache.job():
        cache.get(spec("base"))
        assert cache.unload_idle(60, now=now + 120) == []  # a job runs: nothing goes
    ended = time.monotonic()  # the job's models count as used when it ends
    assert cache.unload_idle(60, now=ended + 30) == []
    idle = cache.unload_idle(60, now=ended + 61)
    assert sorted(each.model for each in idle) == ["base", "tiny"]
    assert sorted(loads.unloaded) == [("base", "idle"), ("tiny", "idle")]
    assert loads.releases == 2
    assert [each.model for each in cache.loaded()] == ["kept"]  # preloaded: never idle
    assert [each.model for each in cache.pinned()] == ["kept"]


def test_the_idle_unloader_runs_on_its_own(runtime: Runtime) -> None:
    runtime.settings.model_idle_ttl_s = 0.3
    runtime.cache.get(runtime.spec("whisperx", "tiny.en"))
    stop = threading.Event()
    thread = start_idle_unloader(runtime, stop)
    assert thread is not None
    try:
        deadline = time.monotonic() + 10
        while runtime.cache.loaded() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runtime.cache.loaded() == []
    finally:
        stop.set()
        thread.join(5)
    runtime.settings.model_idle_ttl_s = 0
    assert start_idle_unloader(runtime, stop) is None


def test_preload_loads_before_any_job(queue: Queue, runtime: Runtime, tone_wav: Path) -> None:
    settings = runtime.settings
    settings.preload_models = [Route.parse("whisperx/tiny.en")]
    runtime.preload(settings.preload_models)
    assert FakeEngine.loads == 1
    job_id = enqueue_audio(queue, settings, tone_wav).id
    work(queue, runtime)
    job = load_job(queue, job_id)
    assert job is not None
    result = describe_job(job).result
    assert result is not None
    assert result.timings.model_load_s == 0.0
    assert FakeEngine.loads == 1


def test_the_collector_lists_loaded_models_and_gpu_memory() -> None:
    registry = CollectorRegistry()
    models = [spec("tiny.en"), ModelSpec("timestamped", "base", "cuda", "float16")]
    readings = [("cuda:0", 3 * 2**30, 80 * 2**30, 2**30)]
    registry.register(RuntimeCollector(lambda: models, lambda: readings))
    read = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    }
    assert read == {
        ("transcribe_model_loaded", (("engine", "whisperx"), ("model", "tiny.en"))): 1,
        ("transcribe_model_loaded", (("engine", "timestamped"), ("model", "base"))): 1,
        ("transcribe_gpu_memory_used_bytes", (("device", "cuda:0"),)): 3 * 2**30,
        ("transcribe_gpu_memory_total_bytes", (("device", "cuda:0"),)): 80 * 2**30,
        ("transcribe_gpu_memory_reserved_bytes", (("device", "cuda:0"),)): 2**30,
    }

    def unreadable() -> list[tuple[str, int, int, int]]:
        raise RuntimeError("NVML: driver not loaded")

    cpu_only = CollectorRegistry()
    cpu_only.register(RuntimeCollector(lambda: [], None))
    assert "gpu" not in generate_latest(cpu_only).decode()
    broken = CollectorRegistry()
    broken.register(RuntimeCollector(lambda: [], unreadable))
    assert "transcribe_model_loaded" in generate_latest(broken).decode()


def test_cuda_n_pins_the_process_to_that_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert pin_device("cuda:2") == "cuda"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")
    assert pin_device("cuda:1") == "cuda"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-1a2b,GPU-3c4d")
    assert pin_device("cuda:0") == "cuda"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "GPU-1a2b"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(ValueError, match="lists 1 GPU"):
        pin_device("cuda:1")
    for untouched in ("cpu", "cuda", "auto"):
        assert pin_device(untouched) == untouched
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"


def test_device_settings_accept_a_gpu_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVICE", "cuda:3")
    assert Settings().device == "cuda:3"
    monkeypatch.setenv("DEVICE", "gpu1")
    with pytest.raises(ValueError, match="device"):
        Settings()
