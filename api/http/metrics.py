"""The API's Prometheus metrics: requests by route, and the queues and workers read from Redis
at each scrape; rendered from every gunicorn process at once, or from this one.

Under gunicorn, `api/gunicorn_conf.py` sets PROMETHEUS_MULTIPROC_DIR before any process imports
prometheus-client, so every worker process records into files there and a scrape answered by
any of them adds them all up. A plain `uvicorn api.main:app` has one process and its default
registry.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest, values
from prometheus_client.core import Counter, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.catalog import Route
from common.routing import live_workers, queue_stats, service_queue_names

HTTP_REQUESTS = Counter(
    "transcribe_http_requests_total",
    "HTTP requests answered, by route template, method and status code.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "transcribe_http_request_duration_seconds",
    "Time to answer an HTTP request (long-polls included: they wait up to 60 s).",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
"""The route label of a request no route matched (a 404), so scanners cannot add series."""


def _route_of(scope: Scope) -> str:
    """The matched route's template (`/status/{job_id}`), never the path itself."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class RequestMetrics:
    """ASGI middleware: counts each HTTP request and times it, labelled by route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = _route_of(scope)
            method = scope["method"] if scope["method"] in METHODS else "other"
            HTTP_REQUESTS.labels(route, method, str(status)).inc()
            HTTP_DURATION.labels(route, method).observe(time.perf_counter() - started)


class ServiceCollector(Collector):
    """At each scrape, from Redis: per engine and model, the jobs waiting (fair-turn lists
    included), the oldest one's age, the jobs running and the workers serving it; the ready
    workers; and whether Redis answered. Cost: one round trip, bounded by the routes and the
    API keys with waiting jobs, never by the jobs queued."""

    def __init__(self, connection: Redis, queue_name: str, routes: list[Route]) -> None:
        self._connection = connection
        self._queue_name = queue_name
        self._routes = routes

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["engine", "model"]
        depth = GaugeMetricFamily(
            "transcribe_queue_depth",
            "Jobs waiting for a worker of this engine and model.",
            labels=labels,
        )
        oldest = GaugeMetricFamily(
            "transcribe_queue_oldest_job_age_seconds",
            "How long the oldest waiting job of this engine and model has waited (0: none).",
            labels=labels,
        )
        running = GaugeMetricFamily(
            "transcribe_jobs_running", "Jobs of this engine and model running now.", labels=labels
        )
        serving = GaugeMetricFamily(
            "transcribe_workers_serving",
            "Ready workers that take jobs of this engine and model.",
            labels=labels,
        )
        up = GaugeMetricFamily("transcribe_redis_up", "1 when Redis answered this scrape.")
        try:
            names = service_queue_names(self._connection, self._queue_name, self._routes)
            stats = queue_stats(self._connection, names)
            ready = live_workers(self._connection, self._queue_name)
        except RedisError:
            up.add_metric([], 0)
            yield up
            return
        for item in stats:
            if item.route is None:  # QUEUE_NAME's own: emptied by maintenance
                continue
            key = [item.route.engine.value, item.route.model]
            depth.add_metric(key, item.depth)
            oldest.add_metric(key, item.oldest_age_s())
            running.add_metric(key, item.running)
            serving.add_metric(key, item.workers)
        up.add_metric([], 1)
        workers = GaugeMetricFamily(
            "transcribe_workers_ready", "Workers ready for jobs, of any engine and model."
        )
        workers.add_metric([], ready)
        yield from (depth, oldest, running, serving, workers, up)


class _ProcessRegistry(Collector):
    """This process's own metrics (the default registry), for a registry built per scrape."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def multiprocess_mode() -> bool:
    """Whether prometheus-client chose its multiprocess mode at import (PROMETHEUS_MULTIPROC_DIR
    was set then)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def render(service: ServiceCollector) -> bytes:
    """The exposition text: every API process's metrics (or this one's), and the service's."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_mode():
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ProcessRegistry())
    registry.register(service)
    return generate_latest(registry)
