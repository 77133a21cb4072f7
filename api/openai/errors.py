"""OpenAI's error body, `{"error": {"message", "type", "param", "code"}}`, for the /v1 routes.

Every error the service raises keeps its status code (the SDKs map those to their exception
classes); on /v1 it is written in OpenAI's shape, and a request's bad field is a 400 naming it
in `param`, as OpenAI answers, where our own routes answer 422.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.requests import Request

from api.errors import InvalidField, ServiceError
from common.contract import PublicStatus

PREFIX = "/v1/"

_TYPES = {401: "invalid_request_error", 429: "requests"}
_CODES = {
    401: "invalid_api_key",
    404: "not_found",
    409: "conflict",
    413: "file_too_large",
    415: "unsupported_media_type",
    429: "rate_limit_exceeded",
    503: "service_unavailable",
}


class OpenAIErrorDetail(BaseModel):
    """What went wrong: OpenAI's four fields."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorBody(BaseModel):
    """The body of every error answer on /v1."""

    error: OpenAIErrorDetail


def documented(descriptions: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for /v1 error answers, each with OpenAI's error body."""
    return {
        code: {"model": OpenAIErrorBody, "description": text} for code, text in descriptions.items()
    }


OPENAI_KEY_ERRORS = documented(
    {
        400: "A bad field; `param` names it.",
        401: "REQUIRE_API_KEY is on and the API key is missing, unknown or revoked.",
        429: "A limit of the API key was reached; retry after Retry-After.",
        503: "Redis unreachable; retry after Retry-After.",
    }
)
"""Answers every /v1 route can give."""


def is_openai_path(request: Request) -> bool:
    """Whether the request is for one of the OpenAI-compatible routes."""
    return request.url.path.startswith(PREFIX)


class OpenAIError(ServiceError):
    """An error raised by the /v1 routes themselves, with OpenAI's `param` and `code`."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status_code, message, headers)
        self.param = param
        self.code = code

    def body(self) -> Any:
        return error_body(self.status_code, self.detail, self.param, self.code)


def error_body(
    status_code: int, message: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error object for an answer with `status_code`."""
    kind = _TYPES.get(
        status_code, "server_error" if status_code >= 500 else "invalid_request_error"
    )
    return {
        "error": {
            "message": message,
            "type": kind,
            "param": param,
            "code": code if code is not None else _CODES.get(status_code),
        }
    }


def model_not_found(model_id: str) -> OpenAIError:
    """OpenAI's 404 for a model id this server does not offer."""
    return OpenAIError(
        404,
        f"The model {model_id!r} does not exist on this server; GET /v1/models lists the ids "
        "it offers.",
        param="model",
        code="model_not_found",
    )


def param_of(location: Sequence[int | str]) -> str | None:
    """The field a validation error's `loc` names (without its `body`/`header` prefix)."""
    names = [str(part) for part in location if not isinstance(part, int)]
    return names[-1] if len(names) > 1 else (names[0] if names else None)


def answer(error: ServiceError) -> JSONResponse:
    """A ServiceError on a /v1 route, in OpenAI's shape (a 422 for one field becomes a 400)."""
    if isinstance(error, OpenAIError):
        return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers)
    if isinstance(error, InvalidField):
        body = error_body(400, error.detail, error.field, "invalid_value")
        return JSONResponse(body, status_code=400, headers=error.headers)
    body = error_body(error.status_code, error.detail)
    return JSONResponse(body, status_code=error.status_code, headers=error.headers)


def validation_answer(errors: Sequence[Any]) -> JSONResponse:
    """FastAPI's validation errors on a /v1 route: OpenAI's 400 for the first field."""
    first = errors[0] if errors else {}
    location = first.get("loc", ())
    param = param_of(location)
    message = str(first.get("msg", "invalid request"))
    if param is not None:
        message = f"{param}: {message}"
    return JSONResponse(error_body(400, message, param, "invalid_value"), status_code=400)


def ended_without_result(
    job_id: str, status: str, error: str | None, job_id_header: str | None = None
) -> OpenAIError:
    """The error for a job that failed (500 `job_failed`) or was canceled (409 `job_canceled`);
    an SDK retry of the request is answered the same."""
    headers = {job_id_header: job_id} if job_id_header else None
    if status == PublicStatus.FAILED:
        return OpenAIError(
            500, f"the transcription failed: {error or 'no reason recorded'} (job {job_id})",
            code="job_failed", headers=headers,
        )  # fmt: skip
    return OpenAIError(
        409, f"the transcription was {status} (job {job_id})", code=f"job_{status}", headers=headers
    )
