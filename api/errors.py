"""The one error type the API's services raise, and the handler that turns it into an answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError


class ServiceError(Exception):
    """A request the service cannot honour: the HTTP status and a message for the client."""

    def __init__(
        self, status_code: int, detail: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.headers = dict(headers or {})

    def body(self) -> Any:
        """The JSON body of the answer."""
        return {"detail": self.detail}


class InvalidField(ServiceError):
    """A 422 for one field of the request, in the shape of FastAPI's own validation errors."""

    def __init__(
        self, field: str, message: str, value: object = None, kind: str = "value_error"
    ) -> None:
        super().__init__(422, message)
        self.field = field
        self.value = value
        self.kind = kind

    def body(self) -> Any:
        error = {"type": self.kind, "loc": ["body", self.field], "msg": self.detail}
        return {"detail": [{**error, "input": self.value}]}


def invalid_body(error: ValidationError) -> RequestValidationError:
    """A form's fields refused by pydantic, as FastAPI reports an invalid body (its 422, or
    OpenAI's 400 on /v1), each error located under `body`."""
    return RequestValidationError(
        [{**item, "loc": ("body", *item["loc"])} for item in error.errors(include_url=False)]
    )


def not_found(job_id: str) -> ServiceError:
    """The 404 for a job id that is unknown or whose job has expired."""
    return ServiceError(404, f"no job {job_id!r} (unknown, or expired after its TTL)")


async def service_error_handler(_request: Request, error: Exception) -> JSONResponse:
    """Answer a ServiceError with its status, body and headers."""
    assert isinstance(error, ServiceError)
    return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers)
