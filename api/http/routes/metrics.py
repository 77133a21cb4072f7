"""GET /metrics: Prometheus metrics of the API and of the queues (no job data; no API key
unless METRICS_REQUIRE_ADMIN_KEY)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.http.deps import QueueDep, SettingsDep, require_metrics_key
from api.http.metrics import ServiceCollector, render
from api.http.schemas import errors

router = APIRouter(tags=["service"], dependencies=[Depends(require_metrics_key)])


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus' text format."},
        **errors(
            {
                401: "METRICS_REQUIRE_ADMIN_KEY is on and no known key was sent.",
                403: "METRICS_REQUIRE_ADMIN_KEY is on and the key is not an admin's.",
            }
        ),
    },
)
def metrics(queue: QueueDep, settings: SettingsDep) -> Response:
    """Request counts and latencies of every API process, jobs submitted and canceled, and per
    engine and model the queue depth, the oldest waiting job's age, the running jobs and the
    workers serving it (see the README's Metrics table)."""
    collector = ServiceCollector(queue.connection, queue.name, settings.catalogue().routes())
    return Response(render(collector), media_type=CONTENT_TYPE_LATEST)
