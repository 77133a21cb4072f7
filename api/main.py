"""The ASGI application (`api.main:app`), built by a factory; connections open in its lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from rq import Queue
from rq.serializers import JSONSerializer
from starlette.concurrency import run_in_threadpool

from api import av_probe
from api.long_poll import MAX_WAIT_S, JobEndWaiter
from api.routes import health, jobs, results, status, transcribe, transcribe_url
from common.redis_conn import connect_async_redis, connect_redis
from config import Settings, get_settings

log = logging.getLogger(__name__)


def _settings_of(app: FastAPI) -> Settings:
    provider = app.dependency_overrides.get(get_settings, get_settings)
    settings: Settings = provider()
    return settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the Redis connection pool and the queue for the app's lifetime."""
    settings = _settings_of(app)
    logging.basicConfig(level=settings.log_level.upper())
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    connection = connect_redis(settings)
    app.state.queue = Queue(settings.queue_name, connection=connection, serializer=JSONSerializer)
    # Long-polls block on their own connections, read timeout past the longest wait.
    blocking = connect_async_redis(settings, MAX_WAIT_S + settings.redis_timeout_s)
    app.state.job_waiter = JobEndWaiter(blocking, app.state.queue.key)
    if av_probe.available():
        await run_in_threadpool(av_probe.prober().warm_up)
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


def create_app() -> FastAPI:
    """Build the API: routers, error mapping and the OpenAPI document."""
    app = FastAPI(
        title="Transcription service",
        summary="Queue audio for whisperx or whisper-timestamped transcription on GPU workers.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.include_router(transcribe.router)
    app.include_router(transcribe_url.router)
    app.include_router(status.router)
    app.include_router(jobs.router)
    app.include_router(results.router)
    app.include_router(health.router)
    app.add_exception_handler(RedisError, _redis_unavailable)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=app.routes,
            )
            body, definitions = transcribe.upload_schema()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(definitions)
            schemas[transcribe.UPLOAD_SCHEMA_NAME] = body
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


app = create_app()
