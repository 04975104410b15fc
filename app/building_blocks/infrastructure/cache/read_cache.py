"""Cache-aside for the mediator's queries, dropped on every commit of the aggregate they show.

* :class:`QueryCachingBehavior` answers a query that has a ``cache_key()`` (see
  :mod:`app.building_blocks.application.caching`) from the cache, or runs it and fills the
  entry. It sits outside the transaction behaviour, so a hit takes no database connection.
* :class:`CacheInvalidationHook` is a unit-of-work commit hook: once a transaction has committed,
  it drops the entries of every aggregate it saved, before the command's caller gets its answer.

No stale read after a write's 2xx: the fill is guarded by the key's generation (read together
with the entry), which the invalidation bumps, so a reader that loaded the old state before the
commit cannot store it after the invalidation. A cache that does not answer is bypassed (see
:mod:`.availability`); an invalidation that could not be sent is owed: this process reads from
the database until a background task has sent it (in batches, as soon as the cache answers).

The entries live under their own namespace (``reads:``), so what is dropped wholesale when too
many invalidations are owed is only them, never the locks or rate limits beside them.
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

READS = "reads:"  # the namespace of cached query results under the cache's prefix
FLUSH_BATCH = 500  # owed invalidations sent per call (a Lua call blocks Redis while it runs)


def entry_key(cache_key: str) -> str:
    """Where a query's cached result lives: ``reads:user:<id>`` (under the cache's prefix)."""
    return READS + cache_key


def cache_usable(availability: CacheAvailability) -> bool:
    """Use the cache now: not inside a failure's back-off window, and no invalidation owed (until
    the owed ones are sent, an entry of this process's making may be stale)."""
    return availability.should_try() and not availability.owes


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
        key = entry_key(cache_key())
        if not cache_usable(self.availability):
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
        except CacheCodecError as error:  # a result the codec cannot keep: served, not cached
            logger.warning("result of %s not cached: %s", context.request_name, error)
        return result

    async def _drop(self, key: str) -> None:
        try:
            await self.cache.invalidate(key)
        except CacheUnavailableError as error:
            self.availability.failed("invalidate", error)


class CacheInvalidationHook:
    """A commit hook: after the commit, the saved aggregates' cache entries are dropped.

    An invalidation the cache did not take is owed: this process bypasses the cache until it is
    sent, and a background task sends the owed ones, in batches, as soon as the cache answers
    (every ``retry_after``). Other processes, which never heard of it, are exposed to the old
    entry only until then (bounded by the entry's TTL in any case). :meth:`close` makes one last,
    bounded attempt and says what it could not send.
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
        keys = tuple(dict.fromkeys(entry_key(aggregate_cache_key(type(a), a.id)) for a in aggregates))
        if not keys:
            return
        if not cache_usable(self.availability):  # down, or owing already: queue behind the others
            self._owe(keys)
            return
        try:
            await self.cache.invalidate(*keys)
        except Exception as error:
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
        while availability.owes:
            await asyncio.sleep(availability.retry_after)
            if availability.should_try():
                await self.send_owed()

    async def send_owed(self) -> bool:
        """Send what is owed, in batches; ``True`` when nothing is owed any more."""
        availability = self.availability
        try:
            if availability.stale_overflow:
                availability.stale_overflow = False  # cleared before the await: a new overflow sets it again
                try:
                    dropped = await self.cache.clear(READS)
                except BaseException:
                    availability.stale_overflow = True
                    raise
                logger.warning("too many invalidations owed: all %d cached reads dropped instead", dropped)
            while availability.stale_keys:
                batch = tuple(list(availability.stale_keys)[:FLUSH_BATCH])
                await self.cache.invalidate(*batch)
                availability.stale_keys.difference_update(batch)
        except Exception as error:
            availability.failed("invalidate", error)
            return False
        availability.succeeded()
        logger.info("owed invalidations sent; the cache is used again")
        return True

    async def close(self, *, timeout: float = 1.0) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        owed = len(self.availability.stale_keys)
        if self.availability.owes:
            sent = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    sent = await self.send_owed()
            if not sent:
                logger.error(
                    "stopping with %d invalidations unsent: those entries may be stale for up to their TTL",
                    len(self.availability.stale_keys) or owed,
                )
