"""What a bounded context gives the composition root: one declaration, built by the service.

A context package (``app/users``, ``app/teams``) declares a :class:`BoundedContext` in its
``module.py``; the composition root keeps one list of them and builds everything from it:
the mediator's handler table (each request with its own context's unit of work), the API's
routers and health checks, the integration-event mappings, the topics to provision and the
consumers. Adding a context is its package plus one line in that list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.building_blocks.api.health import HealthCheck
from app.building_blocks.application.handlers import RequestHandler
from app.building_blocks.application.mediator import Mediator, RequestContext
from app.building_blocks.application.requests import Request
from app.building_blocks.infrastructure.messaging.mapper import IntegrationEventMapper
from app.building_blocks.infrastructure.messaging.subscriptions import Subscription
from app.building_blocks.infrastructure.persistence.metadata import metadata
from app.building_blocks.infrastructure.persistence.unit_of_work import CommitHook

UnitOfWorkFactory = Callable[[async_sessionmaker[AsyncSession], Sequence[CommitHook]], Any]
"""Builds the context's unit of work from the session factory and the commit hooks (the outbox)."""

HandlerFactory = Callable[[Any], RequestHandler[Any, Any]]
"""Builds a handler from the context's unit of work, per request (usually the handler class)."""


@dataclass(frozen=True)
class BoundedContext:
    """Everything one bounded context contributes to the service.

    ``name`` is its package's last part (``"users"``); ``package`` (``"app.users"``) is where the
    mediator looks for request types that lack a handler at startup. ``tables`` must be on the
    shared metadata (Alembic and the drift test compare migrations against it).
    ``aggregates`` are the aggregate types whose integration events the context publishes: one
    topic each, provisioned by the worker. ``health_checks`` build readiness checks from the
    engine.
    """

    name: str
    package: str
    handlers: Mapping[type[Request[Any]], HandlerFactory]
    unit_of_work: UnitOfWorkFactory
    routers: Sequence[APIRouter] = ()
    tables: Sequence[Table] = ()
    integration_events: Callable[[IntegrationEventMapper], None] | None = None
    aggregates: Sequence[str] = ()
    subscriptions: Sequence[Subscription] = ()
    health_checks: Sequence[Callable[[AsyncEngine], HealthCheck]] = ()

    def __post_init__(self) -> None:
        strangers = [table.name for table in self.tables if table.metadata is not metadata]
        if strangers:
            raise ValueError(f"context {self.name!r}: tables not on the shared metadata: {strangers}")

    def register_handlers(self, mediator: Mediator[Any], unit_of_work: Callable[[], Any]) -> None:
        """Register every handler of the context with the context's own unit of work."""
        for request_type, build in self.handlers.items():
            mediator.register(request_type, _per_request(build), unit_of_work_factory=unit_of_work)


def _per_request(build: HandlerFactory) -> Callable[[RequestContext[Any]], RequestHandler[Any, Any]]:
    return lambda context: build(context.unit_of_work)


def check_unique(contexts: Sequence[BoundedContext]) -> None:
    """Fail at startup when two contexts claim one name, request type, consumer or aggregate."""
    seen: dict[str, str] = {}
    for context in contexts:
        claims = [f"context {context.name}"]
        claims += [f"request {r.__module__}.{r.__qualname__}" for r in context.handlers]
        claims += [f"consumer {subscription.name}" for subscription in context.subscriptions]
        claims += [f"aggregate {aggregate}" for aggregate in context.aggregates]
        for claim in claims:
            if claim in seen:
                raise ValueError(f"{claim} is claimed by both {seen[claim]} and {context.name}")
            seen[claim] = context.name
