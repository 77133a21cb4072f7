"""The app factory: routers, error answers, the OpenAPI document; connections open in lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from redis.exceptions import RedisError
from rq import Queue
from rq.serializers import JSONSerializer
from starlette.concurrency import run_in_threadpool

from api.errors import ServiceError, service_error_handler
from api.http.deps import get_caller
from api.http.routes import events, health, jobs, results, status, transcribe, transcribe_url
from api.http.schemas import KEY_ERRORS, MODEL_NAME_SCHEMA, OFFERED_MODEL_MARK
from api.intake import pyav_helper
from api.jobs.events import JobEventReader
from api.jobs.long_poll import MAX_WAIT_S, JobEndWaiter
from api.jobs.submit import offered_models
from common.redis_conn import connect_async_redis, connect_redis
from config import Settings

log = logging.getLogger(__name__)

STATIC_DOCS_URL = "/static/docs"
"""Where the Swagger UI and ReDoc assets are served from (shipped by fastapi-offline)."""


def _settings_of(app: FastAPI) -> Settings:
    settings: Settings = app.state.settings
    return settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the Redis connection pool and the queue for the app's lifetime."""
    settings = _settings_of(app)
    logging.basicConfig(level=settings.log_level)
    if not settings.require_api_key:
        log.warning(
            "the API is open: anyone who can reach it may submit and read every job; set "
            "REQUIRE_API_KEY=true and create keys with `python -m api.keys create NAME`"
        )
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    connection = connect_redis(settings)
    app.state.queue = Queue(settings.queue_name, connection=connection, serializer=JSONSerializer)
    # Long-polls and event streams block on their own connections, read timeout past the
    # longest wait.
    blocking = connect_async_redis(settings, MAX_WAIT_S + settings.redis_timeout_s)
    app.state.job_waiter = JobEndWaiter(blocking, app.state.queue.name)
    app.state.event_reader = JobEventReader(blocking, app.state.queue)
    if pyav_helper.available():
        await run_in_threadpool(pyav_helper.prober().warm_up)
    try:
        yield
    finally:
        connection.close()
        await blocking.aclose()


async def _redis_unavailable(request: Request, error: Exception) -> JSONResponse:
    log.warning("redis unavailable during %s %s: %s", request.method, request.url.path, error)
    retry_after = _settings_of(request.app).redis_retry_after_s
    return JSONResponse(
        {"detail": "the job store (Redis) is unavailable; retry shortly"},
        status_code=503,
        headers={"Retry-After": str(retry_after)},
    )


def _refer_to_offered_models(node: Any) -> Any:
    """Point every model field's schema (OFFERED_MODEL_MARK) at the ModelName component."""
    if node == OFFERED_MODEL_MARK:
        return {"$ref": f"#/components/schemas/{MODEL_NAME_SCHEMA}"}
    if isinstance(node, dict):
        for name, value in node.items():
            node[name] = _refer_to_offered_models(value)
    elif isinstance(node, list):
        node[:] = [_refer_to_offered_models(value) for value in node]
    return node


def create_app(settings: Settings) -> FastAPI:
    """Build the API for `settings`: routers, error mapping and the OpenAPI document.

    /docs and /redoc load their scripts and styles from the service itself (STATIC_DOCS_URL),
    so they work where no CDN can be reached.
    """
    app = FastAPIOffline(
        title="Transcription service",
        summary="Queue audio for whisperx or whisper-timestamped transcription on GPU workers.",
        version="0.1.0",
        lifespan=lifespan,
        static_url=STATIC_DOCS_URL,
    )
    app.state.settings = settings
    # Every resource needs an API key when REQUIRE_API_KEY is on; the probes do not.
    for module in (transcribe, transcribe_url, status, jobs, events, results):
        app.include_router(module.router, dependencies=[Depends(get_caller)], responses=KEY_ERRORS)
    app.include_router(health.router)
    app.add_exception_handler(ServiceError, service_error_handler)
    app.add_exception_handler(RedisError, _redis_unavailable)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            _refer_to_offered_models(document)
            schemas[MODEL_NAME_SCHEMA] = {
                "title": MODEL_NAME_SCHEMA,
                "type": "string",
                "enum": offered_models(_settings_of(app)),
                "description": "Models this server offers (ALLOWED_MODELS).",
            }
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
