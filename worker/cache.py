"""Keeps loaded engines warm, keyed by engine, model, device and compute type; preloaded ones
stay, others go when least recently used or idle past a TTL."""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator

from worker.engines.base import Engine, ModelSpec

log = logging.getLogger(__name__)

Loader = Callable[[ModelSpec], Engine]
Unloaded = Callable[[ModelSpec, str], None]
"""Told of each engine let go, with why: `evicted` (room for another) or `idle`."""


class ModelCache:
    """At most `capacity` engines, least recently used evicted first; each loaded once.

    `check` (optional) raises, before anything is evicted, for a spec whose load is known to
    fail (a catalogue path that is not there), so a bad request costs no warm model.

    `pin` keeps an engine (preloading): it is evicted only when every engine is pinned, and
    never for being idle. `unload_idle` lets go of engines no job has used for a while, but
    never while a job runs (`job`): the job may be using one.
    """

    def __init__(
        self,
        loader: Loader,
        capacity: int,
        on_unload: Unloaded | None = None,
        release: Callable[[], None] | None = None,
        check: Callable[[ModelSpec], None] | None = None,
    ) -> None:
        self._loader = loader
        self._check = check
        self._capacity = capacity
        self._on_unload = on_unload
        self._release = release or gc.collect
        self._engines: OrderedDict[ModelSpec, Engine] = OrderedDict()
        self._last_used: dict[ModelSpec, float] = {}
        self._pinned: set[ModelSpec] = set()
        self._jobs = 0
        self._used_in_job: set[ModelSpec] = set()
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, spec: ModelSpec) -> tuple[Engine, float]:
        """The engine for `spec` and the seconds spent loading it now (0.0 when it was warm)."""
        with self._lock:
            self._last_used[spec] = time.monotonic()
            if self._jobs:
                self._used_in_job.add(spec)
            engine = self._engines.get(spec)
            if engine is not None:
                self._engines.move_to_end(spec)
                return engine, 0.0
            if self._check is not None:
                self._check(spec)  # a load bound to fail unloads nothing warm
            while len(self._engines) >= self._capacity:
                unpinned = [each for each in self._engines if each not in self._pinned]
                evicted = unpinned[0] if unpinned else next(iter(self._engines))
                log.info("unloading %s to make room", evicted)
                self._drop(evicted, "evicted")
            started = time.perf_counter()
            engine = self._loader(spec)
            load_s = time.perf_counter() - started
            self.loads += 1
            log.info("loaded %s in %.1f s", spec, load_s)
            self._engines[spec] = engine
            return engine, load_s

    def pin(self, spec: ModelSpec) -> float:
        """Load `spec` now (if it is not warm) and keep it; the seconds spent loading."""
        _, load_s = self.get(spec)
        with self._lock:
            self._pinned.add(spec)
        return load_s

    @contextlib.contextmanager
    def job(self) -> Iterator[None]:
        """While a job runs: nothing is unloaded for idleness, and what it used counts as used
        when it ends (a long job's model is not idle for the job's duration)."""
        with self._lock:
            self._jobs += 1
        try:
            yield
        finally:
            with self._lock:
                self._jobs -= 1
                now = time.monotonic()
                for spec in self._used_in_job:
                    self._last_used[spec] = now
                if not self._jobs:
                    self._used_in_job.clear()

    def unload_idle(self, ttl_s: float, now: float | None = None) -> list[ModelSpec]:
        """Let go of the unpinned engines unused for `ttl_s` seconds (none while a job runs);
        returns them."""
        moment = time.monotonic() if now is None else now
        with self._lock:
            if self._jobs:
                return []
            idle = [
                spec
                for spec in self._engines
                if spec not in self._pinned and moment - self._last_used.get(spec, 0.0) >= ttl_s
            ]
            for spec in idle:
                log.info("unloading %s: unused for %.0f s", spec, ttl_s)
                self._drop(spec, "idle")
            return idle

    def _drop(self, spec: ModelSpec, reason: str) -> None:
        """Forget an engine (lock held) and give its memory back; counted first, so that an
        engine no longer listed has always been counted."""
        if self._on_unload is not None:
            self._on_unload(spec, reason)
        del self._engines[spec]
        self._last_used.pop(spec, None)
        self._pinned.discard(spec)
        self._release()

    def loaded(self) -> list[ModelSpec]:
        """The specs currently warm, least recently used first."""
        with self._lock:
            return list(self._engines)

    def pinned(self) -> list[ModelSpec]:
        """The specs kept by `pin`."""
        with self._lock:
            return [spec for spec in self._engines if spec in self._pinned]
