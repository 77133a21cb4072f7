"""Keeps loaded engines warm, keyed by engine, model, device and compute type."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from worker.engines.base import Engine, ModelSpec

log = logging.getLogger(__name__)

Loader = Callable[[ModelSpec], Engine]


class ModelCache:
    """At most `capacity` engines, least recently used evicted first; each loaded once."""

    def __init__(self, loader: Loader, capacity: int) -> None:
        self._loader = loader
        self._capacity = capacity
        self._engines: OrderedDict[ModelSpec, Engine] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, spec: ModelSpec) -> tuple[Engine, float]:
        """The engine for `spec` and the seconds spent loading it now (0.0 when it was warm)."""
        with self._lock:
            engine = self._engines.get(spec)
            if engine is not None:
                self._engines.move_to_end(spec)
                return engine, 0.0
            while len(self._engines) >= self._capacity:
                evicted, _ = self._engines.popitem(last=False)
                log.info("unloading %s to make room", evicted)
                gc.collect()
            started = time.perf_counter()
            engine = self._loader(spec)
            load_s = time.perf_counter() - started
            self.loads += 1
            log.info("loaded %s in %.1f s", spec, load_s)
            self._engines[spec] = engine
            return engine, load_s

    def loaded(self) -> list[ModelSpec]:
        """The specs currently warm, least recently used first."""
        with self._lock:
            return list(self._engines)
