"""Composition root: the one place that knows every concrete class.

``create_app(settings)`` builds the object graph by hand: engine → unit of work → mediator (with
its behaviours and the users handlers) → FastAPI app (errors, middleware, routers). It is the
ASGI factory (``uvicorn --factory app.main:create_app``): importing this module builds nothing,
creates no file and configures no logging, so the worker and the tests import it freely.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from app.building_blocks.api.exceptions import setup_exception_handlers
from app.building_blocks.api.health import Degraded, HealthCheck, create_health_router
from app.building_blocks.api.limits import RequestLimitsMiddleware
from app.building_blocks.api.middleware import CorrelationIdMiddleware
from app.building_blocks.api.openapi import install_problem_openapi
from app.building_blocks.application.behaviors import LoggingBehavior, TransactionBehavior
from app.building_blocks.application.mediator import Mediator
from app.building_blocks.infrastructure.messaging.outbox_admin import outbox_status
from app.building_blocks.infrastructure.messaging.publishers import (
    create_event_publisher,
    create_integration_event_mediator,
)
from app.building_blocks.infrastructure.persistence.database import (
    check_database,
    create_engine,
    create_session_factory,
)
from app.building_blocks.observability.logging import configure_logging
from app.messaging import Messaging, build_messaging
from app.settings import Settings, get_settings
from app.users import module as users
from app.users.application.unit_of_work import UsersUnitOfWork
from app.users.persistence.unit_of_work import SqlAlchemyUsersUnitOfWork

logger = logging.getLogger("app")


def build_engine(settings: Settings) -> AsyncEngine:
    db = settings.database
    return create_engine(
        db.url,
        echo=db.echo,
        pool_size=db.pool_size,
        max_overflow=db.max_overflow,
        pool_timeout=db.pool_timeout,
        connect_timeout=db.connect_timeout,
        lock_timeout=db.lock_timeout,
        statement_timeout=db.statement_timeout or None,
        application_name=settings.service_name,
    )


def build_mediator(engine: AsyncEngine, messaging: Messaging) -> Mediator[UsersUnitOfWork]:
    """Commands commit their integration events to the outbox in the same transaction; with the
    outbox switched off (development only) they are published straight after the commit."""
    session_factory = create_session_factory(engine)
    hooks = messaging.commit_hooks()
    mediator: Mediator[UsersUnitOfWork] = Mediator(
        behaviors=[LoggingBehavior(), TransactionBehavior()],
        unit_of_work_factory=lambda: SqlAlchemyUsersUnitOfWork(session_factory, hooks),
    )
    users.register_handlers(mediator)
    mediator.verify("app.users")
    if messaging.outbox is None:
        publisher = create_event_publisher(
            messaging.settings.kafka, producer=messaging.producer, topics=messaging.topics
        )
        create_integration_event_mediator(mediator, publisher, messaging.mapper)
    return mediator


async def parked_outbox_rows(engine: AsyncEngine) -> Mapping[str, int] | Degraded:
    """Readiness detail: events the relay parked (and rows waiting behind them) are degraded
    service, not a reason to stop routing requests here."""
    status = await outbox_status(engine)
    details = {"parked": status.parked, "waiting_behind_parked": status.waiting}
    return Degraded(details) if status.parked else details


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(service=settings.service_name, level=settings.log_level, json=settings.log_json)
    engine = build_engine(settings)
    # Embedded mode runs the relay and consumers in this process; otherwise the worker does.
    messaging = build_messaging(
        settings, engine, relay=settings.kafka.embedded, consumers=settings.kafka.embedded
    )
    mediator = build_mediator(engine, messaging)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await check_database(engine, timeout=settings.database.connect_timeout)
        stop = asyncio.Event()
        background = asyncio.create_task(messaging.run(stop)) if messaging.embedded else None
        logger.info(
            "%s started (%s, %s messaging)",
            settings.service_name,
            engine.url.get_backend_name(),
            "embedded" if messaging.embedded else "Kafka",
        )
        try:
            yield
        finally:
            stop.set()
            if background is not None:
                await background
            await messaging.producer.stop()
            await engine.dispose()

    app = FastAPI(
        title="User Service",
        version="0.1.0",
        description="User management on the FastAPI building blocks. Errors are RFC 9457 "
        "`application/problem+json`.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.mediator = mediator
    app.state.messaging = messaging

    setup_exception_handlers(app, include_stack_trace=settings.include_stack_trace, log_errors=True)
    install_problem_openapi(app)
    app.add_middleware(
        RequestLimitsMiddleware,
        max_body_bytes=settings.max_request_body_bytes,
        body_timeout=settings.request_body_timeout,
    )
    app.add_middleware(CorrelationIdMiddleware)  # outermost: every response carries the id

    checks = [HealthCheck("database", lambda: check_database(engine))]
    if settings.kafka.enable_outbox:
        checks.append(HealthCheck("outbox", lambda: parked_outbox_rows(engine)))
    app.include_router(
        create_health_router(
            checks,
            timeout=settings.readiness_timeout,
        )
    )
    app.include_router(users.router)
    return app
