"""The object graph both processes share: engine → messaging → mediator → consumers.

The API (``app.main``) and the worker (``app.worker``) each build a :class:`Service` from the
settings and the one list of bounded contexts (``app.contexts``); neither builds the other's
parts, and nothing is built at import.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.building_blocks.application.behaviors import LoggingBehavior, TransactionBehavior
from app.building_blocks.application.mediator import Mediator, PipelineBehavior
from app.building_blocks.bounded_context import BoundedContext, check_unique
from app.building_blocks.infrastructure.cache.availability import CacheAvailability
from app.building_blocks.infrastructure.cache.base import Cache
from app.building_blocks.infrastructure.cache.client import RedisClient
from app.building_blocks.infrastructure.cache.config import RedisConfig
from app.building_blocks.infrastructure.cache.memory import MemoryCache
from app.building_blocks.infrastructure.cache.rate_limit import (
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
)
from app.building_blocks.infrastructure.cache.read_cache import CacheInvalidationHook, QueryCachingBehavior
from app.building_blocks.infrastructure.http.auth import AuthChain, AuthStrategy
from app.building_blocks.infrastructure.http.client import HttpClient
from app.building_blocks.infrastructure.http.external import ExternalApiConfig, ExternalApis
from app.building_blocks.infrastructure.messaging.outbox_gauges import sample_outbox
from app.building_blocks.infrastructure.messaging.publishers import (
    create_event_publisher,
    create_integration_event_mediator,
)
from app.building_blocks.infrastructure.messaging.subscriptions import Subscription
from app.building_blocks.infrastructure.persistence.database import create_engine, create_session_factory
from app.building_blocks.infrastructure.webhooks.delivery import WebhookDelivery, event_types
from app.building_blocks.infrastructure.webhooks.signing import WebhookSigning
from app.building_blocks.observability.runtime import sample_runtime
from app.contexts import CONTEXTS
from app.messaging import Messaging, build_messaging
from app.settings import Settings

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
        ping_after_idle=db.ping_after_idle,
    )


@dataclass
class ServiceCache:
    """Redis (``REDIS_URL``) or process memory: the read cache, its availability, the limiters."""

    cache: Cache
    availability: CacheAvailability
    ttl: float  # of cached reads; 0: reads are not cached
    rate_limiters: dict[str, RateLimiter | None]
    redis: RedisClient | None

    def __post_init__(self) -> None:
        self.behavior = QueryCachingBehavior(self.cache, self.availability, ttl=self.ttl)
        self.invalidation = CacheInvalidationHook(self.cache, self.availability)

    @property
    def reads_cached(self) -> bool:
        return self.ttl > 0

    @property
    def owed_invalidations(self) -> int:
        return len(self.availability.stale_keys)

    async def close(self) -> None:
        await self.invalidation.close()
        if self.redis is not None:
            await self.redis.close()


def build_cache(settings: Settings) -> ServiceCache:
    """Nothing connects here: Redis is reached on first use, and its absence is survivable.

    Without ``REDIS_URL`` the cache is this process's memory, and reads are cached only when this
    is the only process: embedded mode (the API runs the relay and the consumers too) with one
    API process (``API_PROCESSES``, which gunicorn.conf.py sets to its worker count).
    """
    redis = settings.redis
    availability = CacheAvailability("Redis" if redis.url else "memory cache", retry_after=redis.retry_after)
    registrations = settings.registrations_limit
    client: RedisClient | None = None
    cache: Cache
    limiter: RateLimiter | None = None
    if redis.url:
        config = RedisConfig.from_url(
            redis.url,
            key_prefix=redis.key_prefix if redis.key_prefix is not None else f"{settings.service_name}:",
            max_connections=redis.max_connections,
            pool_timeout=redis.pool_timeout,
            socket_timeout=redis.socket_timeout,
            socket_connect_timeout=redis.connect_timeout,
        )
        cache = client = RedisClient(config)
        if registrations is not None:
            limiter = RedisRateLimiter(client, registrations, name="registrations")
    else:
        cache = MemoryCache()
        if registrations is not None:  # per process: under several processes, a looser limit
            limiter = MemoryRateLimiter(registrations, name="registrations")
    # Process memory is one process's: with the relay and consumers elsewhere (the worker) or
    # several API processes, a change committed in one would leave the others' entries stale.
    alone = settings.kafka.embedded and settings.api_processes == 1
    ttl = settings.cache_ttl if client is not None or alone else 0.0
    return ServiceCache(cache, availability, ttl, {"registrations": limiter}, client)


def build_mediator(
    engine: AsyncEngine,
    messaging: Messaging,
    contexts: Sequence[BoundedContext],
    cache: ServiceCache | None = None,
) -> Mediator[Any]:
    """One mediator for every context, each request with its own context's unit of work.

    Commands commit their integration events to the outbox in the same transaction; with the
    outbox switched off (development only) they are published straight after the commit.
    With a read cache, queries that name a cache key are answered from it (before a database
    connection is taken) and every commit drops the entries of the aggregates it saved.
    """
    sessions = create_session_factory(engine)
    hooks = messaging.commit_hooks()
    behaviors: list[PipelineBehavior] = [LoggingBehavior()]
    if cache is not None and cache.reads_cached:
        behaviors.append(cache.behavior)
        hooks = [*hooks, cache.invalidation]
    behaviors.append(TransactionBehavior())
    mediator: Mediator[Any] = Mediator(behaviors=behaviors)
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
    cache: ServiceCache
    external_apis: ExternalApis

    async def close(self) -> None:
        """What the service opened beside its engine: HTTP clients, the cache's connections."""
        await self.external_apis.close()
        await self.cache.close()


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
    cache = build_cache(settings)
    mediator = build_mediator(engine, messaging, contexts, cache)
    external_apis = ExternalApis.from_environment(consumer_id=settings.service_name)
    if consumers:
        webhooks = build_webhooks(settings, external_apis, contexts)
        messaging.add_consumers(contexts, mediator, engine, extra=[webhooks] if webhooks else [])
    return Service(settings, engine, messaging, mediator, contexts, cache, external_apis)


WEBHOOK_CONSUMER = "webhooks"


def build_webhooks(
    settings: Settings, external_apis: ExternalApis, contexts: Sequence[BoundedContext]
) -> Subscription | None:
    """With ``WEBHOOK_URL``: a consumer of every aggregate's events that POSTs them there,
    signed, through a client configured as ``EXTERNAL_APIS__WEBHOOKS__*`` (timeouts, retries,
    breaker, and any credentials the endpoint wants besides the signature)."""
    webhooks = settings.webhooks
    if not webhooks.url:
        return None
    api = external_apis.apis.get(WEBHOOK_CONSUMER) or ExternalApiConfig(base_url=webhooks.url)
    config = api.client_config(WEBHOOK_CONSUMER, consumer_id=settings.service_name)
    strategies: list[AuthStrategy] = [config.auth_strategy] if config.auth_strategy else []
    if webhooks.secret is not None:
        strategies.append(WebhookSigning(webhooks.secret.get_secret_value()))  # last: it signs
    else:
        logger.warning("WEBHOOK_SECRET is not set: webhooks go out unsigned (development only)")
    config = replace(config, base_url="", auth_strategy=AuthChain(*strategies) if strategies else None)
    client = external_apis.adopt(WEBHOOK_CONSUMER, HttpClient(config))
    delivery = WebhookDelivery(
        client, webhooks.url, events=event_types(webhooks.events), max_age=webhooks.max_age
    )
    aggregates = [aggregate for context in contexts for aggregate in context.aggregates]
    # A new group starts at the topics' end: switching webhooks on sends what happens from then,
    # not the service's whole history (a group that has committed resumes where it was).
    return Subscription(WEBHOOK_CONSUMER, delivery, aggregates=aggregates, start_at="latest")


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
