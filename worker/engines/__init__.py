"""Engine adapters behind one small interface, found through a lazy name → import-string table."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, cast

from common.catalog import EngineName

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
    try:
        target = table[name]
    except KeyError:
        raise UnknownEngineError(
            f"unknown engine {name!r}; this worker has {', '.join(sorted(table))}"
        ) from None
    module_name, _, attribute = target.partition(":")
    return cast("EngineFactory", getattr(import_module(module_name), attribute))
