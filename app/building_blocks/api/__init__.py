"""API building blocks: ProblemDetails errors, dependencies, middleware, health, OpenAPI."""

from app.building_blocks.api.dependencies import MediatorDep, get_mediator
from app.building_blocks.api.exceptions import (
    ApiException,
    BadRequestException,
    ConflictException,
    ForbiddenException,
    NotFoundException,
    PreconditionFailedException,
    ServiceUnavailableException,
    TooManyRequestsException,
    UnauthorizedException,
    UnprocessableEntityException,
    problem_response,
    setup_exception_handlers,
)
from app.building_blocks.api.health import HealthCheck, create_health_router
from app.building_blocks.api.middleware import CorrelationIdMiddleware
from app.building_blocks.api.openapi import install_problem_openapi, problem_responses
from app.building_blocks.api.problem_details import PROBLEM_JSON, ProblemDetails
from app.building_blocks.api.responses import SuccessResponse

__all__ = [
    "PROBLEM_JSON",
    "ApiException",
    "BadRequestException",
    "ConflictException",
    "CorrelationIdMiddleware",
    "ForbiddenException",
    "HealthCheck",
    "MediatorDep",
    "NotFoundException",
    "PreconditionFailedException",
    "ProblemDetails",
    "ServiceUnavailableException",
    "SuccessResponse",
    "TooManyRequestsException",
    "UnauthorizedException",
    "UnprocessableEntityException",
    "create_health_router",
    "get_mediator",
    "install_problem_openapi",
    "problem_response",
    "problem_responses",
    "setup_exception_handlers",
]
