"""ProblemDetails rendering for every kind of error, on a bare FastAPI app (in process)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from app.building_blocks.api import (
    BadRequestException,
    ConflictException,
    CorrelationIdMiddleware,
    ForbiddenException,
    NotFoundException,
    PreconditionFailedException,
    ServiceUnavailableException,
    TooManyRequestsException,
    UnauthorizedException,
    UnprocessableEntityException,
    install_problem_openapi,
    problem_responses,
    setup_exception_handlers,
)
from app.building_blocks.domain import (
    BusinessRuleViolationError,
    ConcurrencyError,
    DomainValidationError,
    NotFoundError,
    PreconditionFailedError,
)
from tests.helpers import assert_problem

API_EXCEPTIONS = {
    400: BadRequestException,
    401: UnauthorizedException,
    403: ForbiddenException,
    404: NotFoundException,
    409: ConflictException,
    412: PreconditionFailedException,
    422: UnprocessableEntityException,
    429: TooManyRequestsException,
    503: ServiceUnavailableException,
}

DOMAIN_ERRORS = {
    "validation": (DomainValidationError("bad age", field="age"), 400),
    "not-found": (NotFoundError("gone"), 404),
    "rule": (BusinessRuleViolationError("not now"), 409),
    "concurrency": (ConcurrencyError("raced"), 409),
    "precondition": (PreconditionFailedError("stale"), 412),
}


class Address(BaseModel):
    street: str


class Person(BaseModel):
    age: int
    address: Address


def build_app(*, include_stack_trace: bool = False) -> FastAPI:
    app = FastAPI(telemetry={"tracing": False})  # untraced: trace_id falls back to the correlation id
    setup_exception_handlers(app, include_stack_trace=include_stack_trace, log_errors=True)
    install_problem_openapi(app)
    app.add_middleware(CorrelationIdMiddleware)

    @app.get("/api/{status}")
    async def api_error(status: int) -> None:
        raise API_EXCEPTIONS[status](f"failed with {status}", error_code=f"E{status}")

    @app.get("/domain/{kind}")
    async def domain_error(kind: str) -> None:
        raise DOMAIN_ERRORS[kind][0]

    @app.post("/people", responses=problem_responses(409))
    async def create(person: Person) -> Person:
        return person

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret connection string postgres://u:p@db")

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.mark.parametrize("status", sorted(API_EXCEPTIONS))
async def test_api_exceptions_render_as_problems(client: httpx.AsyncClient, status: int) -> None:
    body = assert_problem(await client.get(f"/api/{status}"), status, f"E{status}")
    assert body["detail"] == f"failed with {status}"


async def test_not_found_exception_matches_the_seed_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/404", headers={"X-Correlation-Id": "corr-1"})
    body = response.json()
    assert set(body) == {"type", "title", "status", "detail", "instance", "trace_id", "extensions"}
    assert body["title"] == "Not Found"
    assert body["trace_id"] == "corr-1"
    assert body["instance"] == "/api/404"


def test_retry_after_and_www_authenticate_headers() -> None:
    assert TooManyRequestsException("slow down", retry_after=7).headers["Retry-After"] == "7"
    assert UnauthorizedException("who?").headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("kind", sorted(DOMAIN_ERRORS))
async def test_domain_errors_map_to_statuses(client: httpx.AsyncClient, kind: str) -> None:
    error, status = DOMAIN_ERRORS[kind]
    body = assert_problem(await client.get(f"/domain/{kind}"), status, error.code)
    if kind == "validation":
        assert body["errors"] == {"age": ["bad age"]}


async def test_validation_errors_are_400_with_dotted_fields(client: httpx.AsyncClient) -> None:
    body = assert_problem(
        await client.post("/people", json={"age": -1.5, "address": {}}), 400, "VALIDATION_ERROR"
    )
    assert body["title"] == "Bad Request"
    assert set(body["errors"]) == {"age", "address.street"}
    assert body["errors"]["address.street"] == ["Field required"]


async def test_unhandled_errors_are_500_without_internals(client: httpx.AsyncClient) -> None:
    response = await client.get("/boom")
    assert_problem(response, 500, "INTERNAL_ERROR")
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    assert "x-correlation-id" in response.headers


async def test_stack_trace_only_when_asked() -> None:
    transport = httpx.ASGITransport(app=build_app(include_stack_trace=True))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        body = assert_problem(await http.get("/boom"), 500)
    assert body["extensions"]["exception_type"] == "RuntimeError"
    assert any("RuntimeError" in line for line in body["extensions"]["stack_trace"])


def test_openapi_documents_problem_details_instead_of_422() -> None:
    schema = build_app().openapi()
    create = schema["paths"]["/people"]["post"]["responses"]
    assert "422" not in create
    assert create["400"]["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/ProblemDetails"
    }
    assert "application/problem+json" in create["409"]["content"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert "ProblemDetails" in schema["components"]["schemas"]
