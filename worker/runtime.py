"""The worker process's long-lived state: settings, resolved device and the warm model cache."""

from __future__ import annotations

from dataclasses import dataclass, field

from config import Settings
from worker.cache import ModelCache
from worker.diarization import DiarizerSlot
from worker.diarization.base import DiarizerContext
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
    diarizers: dict[str, str] | None = None
    cache: ModelCache = field(init=False)
    diarizer: DiarizerSlot = field(init=False)
    """The process's diarization backend, loaded by the first job with `diarize`."""

    def __post_init__(self) -> None:
        self.cache = ModelCache(self.load, self.settings.max_loaded_models)
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
        """Resolve the device once and prepare an empty cache; `engines` and `diarizers`
        replace the registries (tests' fakes)."""
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
        """The cache key of an engine and model on this worker's device."""
        return ModelSpec(
            engine=engine, model=model, device=self.device, compute_type=self.compute_type
        )

    def load(self, spec: ModelSpec) -> Engine:
        """Build (and so load) the engine for a spec; used by the cache on a miss."""
        return resolve_engine(spec.engine, self.engines)(spec, self.context)
