"""The worker process's long-lived state: settings, resolved device and the warm model cache."""

from __future__ import annotations

from dataclasses import dataclass, field

from common.catalog import EngineName, Route
from config import Settings
from worker.cache import ModelCache
from worker.engines import resolve_engine
from worker.engines.base import Engine, LoadContext, ModelSpec
from worker.models import cpu_threads, resolve_compute_type, resolve_device


@dataclass
class Runtime:
    """What jobs in this process share; built once by `worker.main`, handed to each job by the
    worker that runs it."""

    settings: Settings
    device: str
    compute_type: str
    context: LoadContext
    engines: dict[str, str] | None = None
    cache: ModelCache = field(init=False)

    def __post_init__(self) -> None:
        self.cache = ModelCache(self.load, self.settings.max_loaded_models)

    @classmethod
    def from_settings(cls, settings: Settings, engines: dict[str, str] | None = None) -> Runtime:
        """Resolve the device once and prepare an empty cache."""
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
        return resolve_engine(spec.engine, self.engines)(spec, self.context)
