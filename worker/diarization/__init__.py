"""Speaker diarization backends behind one small interface, found through a lazy name →
import-string table, and the choice among them (`DIARIZATION_BACKEND`)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from worker.registry import resolve

if TYPE_CHECKING:
    from worker.diarization.base import Diarizer, DiarizerContext, DiarizerFactory

log = logging.getLogger(__name__)

# Heavy libraries are imported only when a backend is first asked for.
DIARIZERS: dict[str, str] = {
    "pyannote": "worker.diarization.pyannote_backend:PyannoteDiarizer",
    "resemblyzer": "worker.diarization.resemblyzer_backend:ResemblyzerDiarizer",
}

AUTO = "auto"
"""The setting that takes pyannote when it can load here, else the bundled backend."""

BUNDLED = "resemblyzer"
"""The backend whose weights ship in a package, so that it loads with no network."""


def resolve_diarizer(name: str, registry: dict[str, str] | None = None) -> DiarizerFactory:
    """The backend class registered under `name`, imported on first use."""
    table = DIARIZERS if registry is None else registry
    return cast("DiarizerFactory", resolve(table, name, "diarization backend"))


@dataclass
class LoadedDiarizer:
    """The backend a worker chose, loaded: its name and what a transcript should say about
    the choice (why pyannote was not used, when `auto` fell back)."""

    name: str
    diarizer: Diarizer
    notes: list[str] = field(default_factory=list)


def load_diarizer(
    setting: str, context: DiarizerContext, registry: dict[str, str] | None = None
) -> LoadedDiarizer:
    """Load the backend `setting` names; `auto` tries pyannote and, when it cannot load here
    (no HF_TOKEN and no pipeline in MODEL_CACHE_DIR, or its load fails), loads the bundled
    backend with a note saying why. An explicitly named backend that cannot load raises
    DiarizationUnavailableError with the reason."""
    from worker.diarization.base import DiarizationUnavailableError

    if setting != AUTO:
        return LoadedDiarizer(setting, resolve_diarizer(setting, registry)(context))
    try:
        return LoadedDiarizer("pyannote", resolve_diarizer("pyannote", registry)(context))
    except DiarizationUnavailableError as error:
        note = f"diarized with the bundled {BUNDLED} backend: {error}"
        log.info("%s", note)
        return LoadedDiarizer(BUNDLED, resolve_diarizer(BUNDLED, registry)(context), [note])


class DiarizerSlot:
    """The worker process's one diarizer, loaded on the first job that asks for it and kept;
    a load that failed is tried again on the next job (the configuration may be fixed by
    then only with a restart, but a transient failure should not stick)."""

    def __init__(
        self, setting: str, context: DiarizerContext, registry: dict[str, str] | None = None
    ) -> None:
        self._setting = setting
        self._context = context
        self._registry = registry
        self._loaded: LoadedDiarizer | None = None
        self._lock = threading.Lock()

    def get(self) -> LoadedDiarizer:
        """The loaded diarizer, loading it on first use."""
        with self._lock:
            if self._loaded is None:
                self._loaded = load_diarizer(self._setting, self._context, self._registry)
            return self._loaded
