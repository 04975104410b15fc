"""The object graph both processes share: engine → messaging → mediator → consumers.

The API (``app.main``) and the worker (``app.worker``) each build a :class:`Service` from the
settings and the one list of bounded contexts (``app.contexts``); neither builds the other's
parts, and nothing is built at import.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.building_blocks.application.behaviors import LoggingBehavior, TransactionBehavior
from app.building_blocks.application.mediator import Mediator
from app.building_blocks.bounded_context import BoundedContext, check_unique
from app.building_blocks.infrastructure.messaging.outbox_gauges import sample_outbox
from app.building_blocks.infrastructure.messaging.publishers import (
    create_event_publisher,
    create_integration_event_mediator,
)
from app.building_blocks.infrastructure.persistence.database import create_engine, create_session_factory
from app.building_blocks.observability.runtime import sample_runtime
from app.contexts import CONTEXTS
from app.messaging import Messaging, build_messaging
from app.settings import Settings


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
        ping_after_idle=db.ping_after_idle,
    )


def build_mediator(
    engine: AsyncEngine, messaging: Messaging, contexts: Sequence[BoundedContext]
) -> Mediator[Any]:
    """One mediator for every context, each request with its own context's unit of work.

    Commands commit their integration events to the outbox in the same transaction; with the
    outbox switched off (development only) they are published straight after the commit.
    """
    sessions = create_session_factory(engine)
    hooks = messaging.commit_hooks()
    mediator: Mediator[Any] = Mediator(behaviors=[LoggingBehavior(), TransactionBehavior()])
    for context in contexts:
        context.register_handlers(mediator, partial(context.unit_of_work, sessions, hooks))
    mediator.verify(*(context.package for context in contexts))
    if messaging.outbox is None:
        publisher = create_event_publisher(
            messaging.settings.kafka, producer=messaging.producer, topics=messaging.topics
        )
        create_integration_event_mediator(mediator, publisher, messaging.mapper)
    return mediator


@dataclass
class Service:
    settings: Settings
    engine: AsyncEngine
    messaging: Messaging
    mediator: Mediator[Any]
    contexts: Sequence[BoundedContext]


def build_service(
    settings: Settings,
    *,
    relay: bool,
    consumers: bool,
    contexts: Sequence[BoundedContext] = CONTEXTS,
) -> Service:
    check_unique(contexts)
    engine = build_engine(settings)
    messaging = build_messaging(settings, engine, contexts, relay=relay)
    mediator = build_mediator(engine, messaging, contexts)
    if consumers:
        messaging.add_consumers(contexts, mediator, engine)
    return Service(settings, engine, messaging, mediator, contexts)


def start_gauge_sampler(
    settings: Settings, engine: AsyncEngine, messaging: Messaging, stop: asyncio.Event
) -> asyncio.Task[None] | None:
    """The gauges of this process (runtime, pool, and the outbox where the relay runs), sampled
    until ``stop``; ``None`` when metrics are off."""
    if not settings.metrics_enabled:
        return None
    probes = [partial(sample_outbox, engine)] if messaging.relay is not None else []
    return asyncio.create_task(
        sample_runtime(stop, engine, interval=settings.metrics_sample_interval, probes=probes)
    )
