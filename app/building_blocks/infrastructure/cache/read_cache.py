"""Cache-aside for the mediator's queries, dropped on every commit of the aggregate they show.

* :class:`QueryCachingBehavior` answers a query that has a ``cache_key()`` (see
  :mod:`app.building_blocks.application.caching`) from the cache, or runs it and fills the
  entry. It sits outside the transaction behaviour, so a hit takes no database connection.
* :class:`CacheInvalidationHook` is a unit-of-work commit hook: once a transaction has committed,
  it drops the entries of every aggregate it saved, before the command's caller gets its answer.

No stale read after a write's 2xx: the fill is guarded by the key's generation (read together
with the entry), which the invalidation bumps, so a reader that loaded the old state before the
commit cannot store it after the invalidation. A cache that does not answer is bypassed (see
:mod:`.availability`); an invalidation that could not be sent is remembered, and this process
reads from the database until it has been sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from app.building_blocks.application.caching import aggregate_cache_key
from app.building_blocks.application.mediator import NextStep, RequestContext
from app.building_blocks.domain.entities import AggregateRoot
from app.building_blocks.domain.events import DomainEvent
from app.building_blocks.infrastructure.cache.availability import CacheAvailability
from app.building_blocks.infrastructure.cache.base import Cache
from app.building_blocks.infrastructure.cache.codec import CacheCodecError
from app.building_blocks.infrastructure.cache.errors import CacheUnavailableError
from app.building_blocks.infrastructure.persistence.database import DbSession
from app.building_blocks.observability.metrics import CACHE_LOOKUPS

logger = logging.getLogger("app.cache")


async def cache_usable(cache: Cache, availability: CacheAvailability) -> bool:
    """Whether to use the cache now: not inside a failure's back-off window, and every
    invalidation this process owes has been sent."""
    if not availability.should_try():
        return False
    if availability.stale_keys or availability.stale_overflow:
        keys = tuple(availability.stale_keys)
        try:
            if availability.stale_overflow:
                await cache.clear()
            else:
                await cache.invalidate(*keys)
        except CacheUnavailableError as error:
            availability.failed("invalidate", error)
            return False
        availability.stale_keys.difference_update(keys)
        availability.stale_overflow = False
        logger.info("sent %d invalidations owed since the cache was unavailable", len(keys))
    return True


class QueryCachingBehavior:
    def __init__(
        self, cache: Cache, availability: CacheAvailability, *, ttl: float, name: str = "queries"
    ) -> None:
        self.cache = cache
        self.availability = availability
        self.ttl = ttl
        self._hit = CACHE_LOOKUPS.labels(cache=name, result="hit")
        self._miss = CACHE_LOOKUPS.labels(cache=name, result="miss")
        self._bypassed = CACHE_LOOKUPS.labels(cache=name, result="bypassed")

    async def handle(self, context: RequestContext[Any], call_next: NextStep) -> Any:
        cache_key = getattr(context.request, "cache_key", None)
        if cache_key is None or context.is_command:
            return await call_next()
        key = cache_key()
        if not await cache_usable(self.cache, self.availability):
            self._bypassed.inc()
            return await call_next()
        try:
            read = await self.cache.read_guarded(key)
        except CacheUnavailableError as error:
            self.availability.failed("read", error)
            self._bypassed.inc()
            return await call_next()
        except CacheCodecError as error:  # an entry this code cannot read (an older release's)
            logger.warning("unreadable cache entry %s dropped: %s", key, error)
            await self._drop(key)
            self._bypassed.inc()
            return await call_next()
        self.availability.succeeded()
        if read.hit:
            self._hit.inc()
            return read.value
        self._miss.inc()
        result = await call_next()
        try:
            await self.cache.fill_guarded(key, result, read.generation, ttl=self.ttl)
        except CacheUnavailableError as error:
            self.availability.failed("fill", error)
        return result

    async def _drop(self, key: str) -> None:
        try:
            await self.cache.invalidate(key)
        except CacheUnavailableError as error:
            self.availability.failed("invalidate", error)


class CacheInvalidationHook:
    """A commit hook: after the commit, the saved aggregates' cache entries are dropped.

    An invalidation the cache did not take is owed: this process bypasses the cache until it is
    sent, and a background task sends it as soon as the cache answers again (every
    ``retry_after``), so other processes, which never heard of it, are exposed to the old entry
    only until then (bounded by the entry's TTL in any case). :meth:`close` stops that task.
    """

    def __init__(self, cache: Cache, availability: CacheAvailability) -> None:
        self.cache = cache
        self.availability = availability
        self._flusher: asyncio.Task[None] | None = None

    async def before_commit(self, session: DbSession, events: list[DomainEvent]) -> None:
        """Nothing to do inside the transaction."""

    def after_commit(self) -> None:
        """The work is in :meth:`committed`, which is awaited."""

    async def committed(self, aggregates: Sequence[AggregateRoot]) -> None:
        keys = tuple(dict.fromkeys(aggregate_cache_key(type(a), a.id) for a in aggregates))
        if not keys:
            return
        if not self.availability.should_try():
            self._owe(keys)
            return
        try:
            await self.cache.invalidate(*keys)
        except CacheUnavailableError as error:
            self.availability.failed("invalidate", error)
            self._owe(keys)
        else:
            self.availability.succeeded()

    def _owe(self, keys: tuple[str, ...]) -> None:
        self.availability.remember_stale(keys)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._send_owed())

    async def _send_owed(self) -> None:
        availability = self.availability
        while availability.stale_keys or availability.stale_overflow:
            await asyncio.sleep(availability.retry_after)
            await cache_usable(self.cache, availability)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
