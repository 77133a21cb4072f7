"""Engine adapters behind one small interface, found through a lazy name → import-string table."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from common.catalog import EngineName
from worker.registry import resolve

if TYPE_CHECKING:
    from worker.engines.base import EngineFactory

# Heavy libraries are imported only when an engine is first asked for.
ENGINES: dict[str, str] = {
    EngineName.WHISPERX.value: "worker.engines.whisperx_engine:WhisperXEngine",
    EngineName.TIMESTAMPED.value: "worker.engines.timestamped_engine:TimestampedEngine",
}


class UnknownEngineError(LookupError):
    """A job named an engine this worker does not have."""


def resolve_engine(name: str, registry: dict[str, str] | None = None) -> EngineFactory:
    """The engine class registered under `name`, imported on first use."""
    table = ENGINES if registry is None else registry
    return cast("EngineFactory", resolve(table, name, "engine", UnknownEngineError))
