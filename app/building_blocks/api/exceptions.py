"""HTTP exceptions and the global handlers that render every error as ProblemDetails.

Raise an :class:`ApiException` subclass in an endpoint, or let a domain error propagate: both end
up as ``application/problem+json`` with ``type``, ``title``, ``status``, ``detail``, ``instance``,
``trace_id`` and, where they apply, ``errors`` and ``extensions``. Nothing internal leaks unless
``include_stack_trace`` is on.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.building_blocks.api.problem_details import PROBLEM_JSON, ProblemDetails, status_title
from app.building_blocks.application.exceptions import TemporarilyUnavailableError
from app.building_blocks.correlation import get_correlation_id
from app.building_blocks.domain.exceptions import (
    ConflictError,
    DomainError,
    DomainValidationError,
    NotFoundError,
    PreconditionFailedError,
)
from app.building_blocks.observability.tracing import current_trace_id

logger = logging.getLogger("app.errors")

__all__ = [
    "ApiException",
    "BadRequestException",
    "ConflictException",
    "ForbiddenException",
    "NotFoundException",
    "PreconditionFailedException",
    "ServiceUnavailableException",
    "TooManyRequestsException",
    "UnauthorizedException",
    "UnprocessableEntityException",
    "problem_response",
    "setup_exception_handlers",
]


class ApiException(Exception):
    """An error with a known HTTP status. ``message`` becomes ``detail``."""

    status_code = 500
    default_error_code = "INTERNAL_ERROR"

    def __init__(
        self,
        message: str | None = None,
        *,
        error_code: str | None = None,
        errors: Mapping[str, list[str]] | None = None,
        extensions: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code or self.default_error_code
        self.errors = dict(errors) if errors else None
        self.extensions = dict(extensions or {})
        self.headers = dict(headers or {})


class BadRequestException(ApiException):
    status_code = 400
    default_error_code = "BAD_REQUEST"


class UnauthorizedException(ApiException):
    status_code = 401
    default_error_code = "UNAUTHORIZED"

    def __init__(self, message: str | None = None, *, scheme: str = "Bearer", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("WWW-Authenticate", scheme)


class ForbiddenException(ApiException):
    status_code = 403
    default_error_code = "FORBIDDEN"


class NotFoundException(ApiException):
    status_code = 404
    default_error_code = "NOT_FOUND"


class ConflictException(ApiException):
    status_code = 409
    default_error_code = "CONFLICT"


class PreconditionFailedException(ApiException):
    status_code = 412
    default_error_code = "PRECONDITION_FAILED"


class UnprocessableEntityException(ApiException):
    status_code = 422
    default_error_code = "UNPROCESSABLE_ENTITY"


class _RetryableException(ApiException):
    def __init__(self, message: str | None = None, *, retry_after: int | None = None, **kwargs: Any):
        super().__init__(message, **kwargs)
        if retry_after is not None:
            self.headers.setdefault("Retry-After", str(retry_after))
            self.extensions.setdefault("retry_after", retry_after)


class TooManyRequestsException(_RetryableException):
    status_code = 429
    default_error_code = "TOO_MANY_REQUESTS"


class ServiceUnavailableException(_RetryableException):
    status_code = 503
    default_error_code = "SERVICE_UNAVAILABLE"


_DOMAIN_STATUS: tuple[tuple[type[DomainError], int], ...] = (
    (DomainValidationError, 400),
    (NotFoundError, 404),
    (PreconditionFailedError, 412),
    (ConflictError, 409),
    (DomainError, 400),
)

_LOCATIONS = {"body", "query", "path", "header", "cookie"}


def problem_response(
    request: Request,
    status: int,
    *,
    detail: str | None = None,
    error_code: str | None = None,
    errors: Mapping[str, list[str]] | None = None,
    extensions: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Render one problem. Used by the handlers below and by endpoints that answer an error."""
    ext = dict(extensions or {})
    if error_code:
        ext = {"error_code": error_code, **ext}
    problem = ProblemDetails.for_status(
        status,
        detail=detail,
        instance=request.url.path,
        trace_id=current_trace_id() or get_correlation_id(),
        errors=dict(errors) if errors else None,
        extensions=ext or None,
    )
    return JSONResponse(
        problem.to_body(), status_code=status, media_type=PROBLEM_JSON, headers=dict(headers or {})
    )


def http_exception_problem(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Starlette's ``HTTPException`` as a problem: ``error_code`` from its status (``NOT_FOUND``)."""
    return problem_response(
        request,
        exc.status_code,
        detail=exc.detail if isinstance(exc.detail, str) else None,
        error_code=status_title(exc.status_code).upper().replace(" ", "_"),
        headers=getattr(exc, "headers", None),
    )


def validation_errors(errors: list[Any]) -> dict[str, list[str]]:
    """Group pydantic/FastAPI errors by dotted field path (``address.street``, ``items.0.sku``)."""
    grouped: dict[str, list[str]] = {}
    for error in errors:
        location = [str(part) for part in error.get("loc", ())]
        if location and location[0] in _LOCATIONS and len(location) > 1:
            location = location[1:]
        if error.get("type") == "json_invalid":
            location = ["body"]
        field = ".".join(location) or "body"
        message = str(error.get("msg", "invalid value"))
        if error.get("type") == "json_invalid":
            message = "request body is not valid JSON"
        grouped.setdefault(field, [])
        if message not in grouped[field]:
            grouped[field].append(message)
    return grouped


def setup_exception_handlers(
    app: FastAPI, *, include_stack_trace: bool = False, log_errors: bool = True
) -> None:
    """Install the handlers that turn every error into ProblemDetails.

    ``include_stack_trace`` adds the exception type and traceback to 500 responses: development
    only. ``log_errors`` logs 5xx responses with their traceback (4xx are the client's business).
    """

    async def on_api_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiException)
        if log_errors and exc.status_code >= 500:
            logger.error("%s: %s", type(exc).__name__, exc.message)
        return problem_response(
            request,
            exc.status_code,
            detail=exc.message,
            error_code=exc.error_code,
            errors=exc.errors,
            extensions=exc.extensions,
            headers=exc.headers,
        )

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return problem_response(
            request,
            400,
            detail="One or more validation errors occurred.",
            error_code="VALIDATION_ERROR",
            errors=validation_errors(list(exc.errors())),
        )

    async def on_http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return http_exception_problem(request, exc)

    async def on_domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DomainError)
        status = next(code for kind, code in _DOMAIN_STATUS if isinstance(exc, kind))
        errors = None
        if isinstance(exc, DomainValidationError) and exc.field:
            errors = {exc.field: [exc.message]}
        return problem_response(
            request,
            status,
            detail=exc.message,
            error_code=exc.code,
            errors=errors,
            extensions=_public_details(exc.details),
        )

    async def on_unavailable(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TemporarilyUnavailableError)
        reason = ""
        if exc.__cause__ is not None:  # its first line names the driver error; later lines may
            first_line = (str(exc.__cause__).splitlines() or [""])[0][:200]  # hold SQL parameters
            reason = f" ({type(exc.__cause__).__name__}: {first_line})"
        logger.warning("503 on %s %s: %s%s", request.method, request.url.path, exc.message, reason)
        return problem_response(
            request,
            503,
            detail=exc.message,
            error_code="TEMPORARILY_UNAVAILABLE",
            extensions={"retry_after": exc.retry_after},
            headers={"Retry-After": str(exc.retry_after)},
        )

    app.add_exception_handler(ApiException, on_api_exception)
    app.add_exception_handler(TemporarilyUnavailableError, on_unavailable)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_exception)
    app.add_exception_handler(DomainError, on_domain_error)
    app.add_middleware(
        UnhandledErrorMiddleware, include_stack_trace=include_stack_trace, log_errors=log_errors
    )


def _public_details(details: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in details.items() if isinstance(value, str | int | float | bool)}


class UnhandledErrorMiddleware:
    """Answers any exception nothing else handled with a 500 problem, and stops it there.

    Starlette's own fallback re-raises after responding, so the server logs the traceback a second
    time; this middleware (inside Starlette's) answers once and logs once. When the response had
    already started, all it can do is stop: the server then closes the unfinished response.
    """

    def __init__(self, app: ASGIApp, *, include_stack_trace: bool, log_errors: bool) -> None:
        self.app = app
        self.include_stack_trace = include_stack_trace
        self.log_errors = log_errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if self.log_errors:
                logger.exception("unhandled %s on %s %s", type(exc).__name__, scope["method"], scope["path"])
            if started:  # too late to answer with a problem
                return
            extensions: dict[str, Any] = {}
            if self.include_stack_trace:
                extensions["exception_type"] = type(exc).__name__
                extensions["stack_trace"] = traceback.format_exception(exc)
            response = problem_response(
                Request(scope),
                500,
                detail="An unexpected error occurred." if not self.include_stack_trace else str(exc),
                error_code="INTERNAL_ERROR",
                extensions=extensions,
            )
            await response(scope, receive, send)
