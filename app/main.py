"""Composition root: the one place that knows every concrete class.

``create_app(settings)`` builds the service from the bounded contexts (``app.contexts``, via
``app.composition``) and puts the FastAPI app around it: errors, middleware, health checks and
every context's routers. It is the
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
from app.building_blocks.infrastructure.cache.errors import CacheUnavailableError
from app.building_blocks.infrastructure.garbage_collection import tune_garbage_collector
from app.building_blocks.infrastructure.messaging.outbox_admin import outbox_status
from app.building_blocks.infrastructure.persistence.database import check_database
from app.building_blocks.observability.setup import (
    instrument_app,
    request_telemetry,
    setup_process_observability,
)
from app.building_blocks.observability.tracing import flush_traces
from app.composition import ServiceCache, build_service, start_gauge_sampler
from app.settings import Settings, get_settings

logger = logging.getLogger("app")


async def cache_status(cache: ServiceCache) -> Mapping[str, str | int] | Degraded:
    """Readiness detail: the service runs without Redis (reads from the database, limits open),
    so Redis down is degraded service, never "not ready"."""
    if cache.redis is None:
        return {"backend": "memory"}
    try:
        await cache.redis.ping()
    except CacheUnavailableError:
        return Degraded({"backend": "redis", "state": "unavailable", "fallback": "database"})
    if cache.availability.owes:  # answering again, but entries of changed users may be stale
        overflow = cache.availability.stale_overflow
        owed: int | str = "more than can be kept" if overflow else cache.owed_invalidations
        return Degraded({"backend": "redis", "owed_invalidations": owed})
    return {"backend": "redis"}


async def parked_outbox_rows(engine: AsyncEngine) -> Mapping[str, int] | Degraded:
    """Readiness detail: events the relay parked (and rows waiting behind them) are degraded
    service, not a reason to stop routing requests here."""
    status = await outbox_status(engine)
    details = {"parked": status.parked, "waiting_behind_parked": status.waiting}
    return Degraded(details) if status.parked else details


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    observability = settings.observability()
    setup_process_observability(observability)  # first: logs and traces of what follows
    # Embedded mode runs the relay and consumers in this process; otherwise the worker does.
    embedded = settings.kafka.embedded
    service = build_service(settings, relay=embedded, consumers=embedded)
    engine, messaging = service.engine, service.messaging

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await check_database(engine, timeout=settings.database.connect_timeout)
        stop = asyncio.Event()
        background = asyncio.create_task(messaging.run(stop)) if messaging.embedded else None
        sampler = start_gauge_sampler(settings, engine, messaging, stop)
        logger.info(
            "%s started (%s, %s messaging)",
            settings.service_name,
            engine.url.get_backend_name(),
            "embedded" if messaging.embedded else "Kafka",
        )
        tune_garbage_collector(settings.gc_threshold)
        try:
            yield
        finally:
            stop.set()
            if background is not None:
                await background
            if sampler is not None:
                await sampler
            await messaging.producer.stop()
            await service.close()
            await engine.dispose()
            flush_traces()

    app = FastAPI(
        title=settings.title,
        version="0.1.0",
        description=f"{settings.service_name} on the FastAPI building blocks "
        f"({', '.join(context.name for context in service.contexts)}). "
        "Errors are RFC 9457 `application/problem+json`.",
        lifespan=lifespan,
        # FastAPI's own telemetry makes the request's server span (W3C context from the headers,
        # named after the route template); metrics and logs are the kit's, and per-operation
        # spans (dependencies, endpoint, serialization) would double the spans of every request.
        telemetry=request_telemetry(observability),
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.mediator = service.mediator
    app.state.messaging = messaging
    app.state.cache = service.cache
    app.state.rate_limiters = service.cache.rate_limiters
    app.state.cache_availability = service.cache.availability

    setup_exception_handlers(app, include_stack_trace=settings.include_stack_trace, log_errors=True)
    install_problem_openapi(app)
    app.add_middleware(
        RequestLimitsMiddleware,
        max_body_bytes=settings.max_request_body_bytes,
        body_timeout=settings.request_body_timeout,
    )
    app.add_middleware(CorrelationIdMiddleware)  # every response carries the id
    # Metrics time the whole stack; the request's span (FastAPI's instrumentation) wraps them all.
    instrument_app(app, observability)

    checks = [
        HealthCheck("database", lambda: check_database(engine)),
        HealthCheck("cache", lambda: cache_status(service.cache)),
    ]
    if settings.kafka.enable_outbox:
        checks.append(HealthCheck("outbox", lambda: parked_outbox_rows(engine)))
    checks += [build(engine) for context in service.contexts for build in context.health_checks]
    app.include_router(create_health_router(checks, timeout=settings.readiness_timeout))
    for context in service.contexts:
        for router in context.routers:
            app.include_router(router)
    return app
