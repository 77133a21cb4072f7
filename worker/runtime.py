"""The worker process's long-lived state: settings, resolved device and the warm model cache."""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass, field

from common.catalog import EngineName, Route
from config import Settings
from worker import metrics
from worker.cache import ModelCache
from worker.diarization import DiarizerSlot
from worker.diarization.base import DiarizerContext
from worker.engines import resolve_engine
from worker.engines.base import Engine, LoadContext, ModelSpec, check_local_source
from worker.models import cpu_threads, release_memory, resolve_compute_type, resolve_device

log = logging.getLogger(__name__)

IDLE_CHECK_MAX_S = 5.0
"""The longest pause between two looks for idle models."""


@dataclass
class Runtime:
    """What jobs in this process share; built once by `worker.main`, handed to each job by the
    worker that runs it."""

    settings: Settings
    device: str
    compute_type: str
    context: LoadContext
    engines: dict[str, str] | None = None
    diarizers: dict[str, str] | None = None
    cache: ModelCache = field(init=False)
    diarizer: DiarizerSlot = field(init=False)
    """The process's diarization backend, loaded by the first job with `diarize`."""

    def __post_init__(self) -> None:
        self.cache = ModelCache(
            self.load,
            self.settings.max_loaded_models,
            on_unload=metrics.model_unloaded,
            release=functools.partial(release_memory, self.device),
            check=check_local_source,
        )
        token = self.settings.hf_token
        context = DiarizerContext(
            device=self.device,
            model_cache_dir=str(self.settings.model_cache_dir),
            pyannote_pipeline=self.settings.pyannote_pipeline,
            hf_token=None if token is None else token.get_secret_value(),
        )
        self.diarizer = DiarizerSlot(self.settings.diarization_backend, context, self.diarizers)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        engines: dict[str, str] | None = None,
        diarizers: dict[str, str] | None = None,
    ) -> Runtime:
        """Resolve the device once (pinning a `cuda:N`) and prepare an empty cache; `engines`
        and `diarizers` replace the registries (tests' fakes)."""
        device = resolve_device(settings.device)
        context = LoadContext(
            model_cache_dir=str(settings.model_cache_dir),
            cpu_threads=cpu_threads(settings),
            batch_size=settings.batch_size,
            align=settings.whisperx_align,
        )
        return cls(
            settings=settings,
            device=device,
            compute_type=resolve_compute_type(settings.compute_type, device),
            context=context,
            engines=engines,
            diarizers=diarizers,
        )

    def spec(self, engine: str, model: str) -> ModelSpec:
        """The cache key of an engine and model on this worker's device, with the catalogue's
        source for the name (MODELS) when it has one."""
        catalogue = self.settings.catalogue()
        return ModelSpec(
            engine=engine,
            model=model,
            device=self.device,
            compute_type=self.compute_type,
            source=catalogue.source(Route(EngineName(engine), model)),
            english_only=catalogue.english_only(model),
        )

    def load(self, spec: ModelSpec) -> Engine:
        """Build (and so load) the engine for a spec; used by the cache on a miss."""
        started = time.perf_counter()
        engine = resolve_engine(spec.engine, self.engines)(spec, self.context)
        metrics.model_loaded(spec, time.perf_counter() - started)
        return engine

    def preload(self, routes: list[Route]) -> None:
        """Load PRELOAD_MODELS before any job, and keep them; raises what a load raises."""
        for route in routes:
            load_s = self.cache.pin(self.spec(route.engine.value, route.model))
            log.info("preloaded %s in %.1f s", route.id, load_s)


def start_idle_unloader(runtime: Runtime, stop: threading.Event) -> threading.Thread | None:
    """Unload models unused for MODEL_IDLE_TTL_S (checked a few times per TTL) until `stop`;
    None when the TTL is 0 (off)."""
    ttl_s = runtime.settings.model_idle_ttl_s
    if ttl_s <= 0:
        return None
    interval_s = min(max(ttl_s / 4, 0.25), IDLE_CHECK_MAX_S)

    def loop() -> None:
        while not stop.wait(interval_s):
            try:
                runtime.cache.unload_idle(ttl_s)
            except Exception:
                log.exception("idle unloading failed")

    thread = threading.Thread(target=loop, name="idle-unloader", daemon=True)
    thread.start()
    return thread
