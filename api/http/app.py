"""The app factory: routers, error answers, the OpenAPI document; connections open in lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from redis.exceptions import RedisError
from rq import Queue
from rq.serializers import JSONSerializer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import Response

from api.errors import ServiceError, service_error_handler
from api.http.deps import get_caller
from api.http.metrics import RequestMetrics
from api.http.routes import (
    events,
    health,
    jobs,
    metrics,
    openai_audio,
    openai_models,
    results,
    status,
    transcribe,
    transcribe_url,
    web,
)
from api.http.schemas import KEY_ERRORS, MODEL_NAME_SCHEMA, OFFERED_MODEL_MARK
from api.intake import pyav_helper
from api.jobs.events import JobEventReader
from api.jobs.long_poll import MAX_WAIT_S, JobEndWaiter
from api.jobs.submit import offered_models
from api.openai import errors as openai_errors
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


async def _redis_unavailable(request: Request, error: Exception) -> Response:
    log.warning("redis unavailable during %s %s: %s", request.method, request.url.path, error)
    retry_after = _settings_of(request.app).redis_retry_after_s
    return await _service_error(
        request,
        ServiceError(
            503,
            "the job store (Redis) is unavailable; retry shortly",
            {"Retry-After": str(retry_after)},
        ),
    )


async def _service_error(request: Request, error: Exception) -> Response:
    """Our routes' error body, or OpenAI's on /v1."""
    assert isinstance(error, ServiceError)
    if openai_errors.is_openai_path(request):
        return openai_errors.answer(error)
    return await service_error_handler(request, error)


async def _invalid_request(request: Request, error: Exception) -> Response:
    """FastAPI's 422, or OpenAI's 400 naming the field on /v1."""
    assert isinstance(error, RequestValidationError)
    if openai_errors.is_openai_path(request):
        return openai_errors.validation_answer(error.errors())
    return await request_validation_exception_handler(request, error)


async def _http_error(request: Request, error: Exception) -> Response:
    """Starlette's own answers (an unknown path, a wrong method), in OpenAI's shape on /v1."""
    assert isinstance(error, HTTPException)
    if openai_errors.is_openai_path(request):
        body = openai_errors.error_body(error.status_code, str(error.detail))
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)
    return await http_exception_handler(request, error)


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


def _openai_validation_is_400(document: dict[str, Any]) -> None:
    """On /v1 a request FastAPI finds invalid is OpenAI's 400 (documented), never a 422."""
    for path, operations in document.get("paths", {}).items():
        if path.startswith(openai_errors.PREFIX):
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)


def create_app(settings: Settings) -> FastAPI:
    """Build the API for `settings`: routers, error mapping and the OpenAPI document.

    /docs and /redoc load their scripts and styles from the service itself (STATIC_DOCS_URL),
    so they work where no CDN can be reached; so does the web page at / (assets under /web).
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
    for module in (openai_audio, openai_models):
        app.include_router(
            module.router,
            dependencies=[Depends(get_caller)],
            responses=openai_errors.OPENAI_KEY_ERRORS,
        )
    app.include_router(health.router)
    app.include_router(web.router)
    app.mount(web.ASSETS_URL, web.assets(), name="web")
    if settings.metrics_enabled:
        app.include_router(metrics.router)
        app.add_middleware(RequestMetrics)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RedisError, _redis_unavailable)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            _refer_to_offered_models(document)
            _openai_validation_is_400(document)
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
