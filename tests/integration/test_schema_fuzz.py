"""schemathesis against the running API's OpenAPI document: no 5xx, nothing off its schema.

Every operation gets schema-valid (positive) and schema-breaking (negative) requests, a bounded
number of each, derandomized so that a run is repeatable.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from redis import Redis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.http.app import create_app
from api.keys.store import KeyStore
from config import Settings
from tests.services import Service

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION_AND_MODE = 40
KEYED_EXAMPLES = 15
"""Fewer with keys on: the same operations, here to show a key changes no answer's shape."""

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
"""Everything but positive_data_acceptance: schema-valid random bytes are rightly not audio."""


def _breakable(operation: dict[str, Any]) -> bool:
    """Whether a request can break the operation's schema at all.

    It can when the operation takes a body or a parameter with a constraint; a bare string
    (such as a job id in the path) accepts every value, so no negative case exists for it.
    """
    if "requestBody" in operation:
        return True
    return any(
        {k: v for k, v in parameter["schema"].items() if k != "title"} != {"type": "string"}
        for parameter in operation.get("parameters", [])
    )


def _cases() -> Iterator[tuple[str, str, GenerationMode]]:
    """(method, path, mode) for every operation in the app's OpenAPI document (no server needed):
    positive requests for all, negative ones for those whose schema a request can break."""
    for path, methods in create_app(Settings()).openapi()["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, GenerationMode.POSITIVE
            if _breakable(operation):
                yield method.upper(), path, GenerationMode.NEGATIVE


@pytest.fixture(scope="module")
def api_schema(service: Service) -> schemathesis.BaseSchema:
    """The live API's own OpenAPI document."""
    return schemathesis.openapi.from_url(f"{service.url}/openapi.json", timeout=30)


@pytest.fixture(scope="module")
def keyed_api(keyed_service: Service) -> tuple[schemathesis.BaseSchema, dict[str, str]]:
    """The keyed deployment's OpenAPI document, and the headers of a key made for the fuzzing."""
    store = KeyStore(Redis(port=keyed_service.redis_port), "transcribe")
    secret = store.create("schema-fuzz")
    document = schemathesis.openapi.from_url(f"{keyed_service.url}/openapi.json", timeout=30)
    return document, {"Authorization": f"Bearer {secret}"}


def _fuzz(operation: Any, mode: GenerationMode, examples: int, headers: dict[str, str]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def exchange(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(checks=CHECKS, timeout=30, headers=headers)

    exchange()


@pytest.mark.parametrize(("method", "path", "mode"), list(_cases()))
def test_with_keys_on_the_api_keeps_to_its_schema(
    keyed_api: tuple[schemathesis.BaseSchema, dict[str, str]],
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    document, headers = keyed_api
    _fuzz(document[path][method], mode, KEYED_EXAMPLES, headers)


@pytest.mark.parametrize(("method", "path", "mode"), list(_cases()))
def test_the_api_keeps_to_its_schema_and_never_fails(
    api_schema: schemathesis.BaseSchema, method: str, path: str, mode: GenerationMode
) -> None:
    _fuzz(api_schema[path][method], mode, EXAMPLES_PER_OPERATION_AND_MODE, {})
