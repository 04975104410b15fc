"""``@cached(cache, ttl=...)``: an async function's results in the cache, loaded once per key.

* ``functools.wraps``: the wrapper keeps the function's name, docstring and signature.
* ``None`` is a result like any other and is cached (a miss is told apart by :data:`MISSING`).
* Single-flight: concurrent calls with one key share one cache read and, on a miss, one load.
* ``fn.invalidate(*args)`` drops an entry after a change; a load that was running meanwhile (it
  may have read the old state) cannot store its result (the key's generation guard).
* The cache failing never fails the call: the function runs (and the failure is counted).
* Keys: ``<namespace>:<key_builder(*args, **kwargs)>``; by default the arguments hashed through
  the cache's codec (so they must be values it can encode); pass ``key_builder`` otherwise.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Awaitable, Callable
from types import EllipsisType
from typing import Any, ParamSpec, TypeVar

from app.building_blocks.infrastructure.cache import codec
from app.building_blocks.infrastructure.cache.base import Cache
from app.building_blocks.infrastructure.cache.errors import CacheUnavailableError
from app.building_blocks.infrastructure.cache.single_flight import SingleFlight
from app.building_blocks.observability.metrics import CACHE_ERRORS, CACHE_LOOKUPS

logger = logging.getLogger("app.cache")

P = ParamSpec("P")
R = TypeVar("R")


def default_key(*args: Any, **kwargs: Any) -> str:
    """A digest of the arguments (order of keyword arguments does not matter)."""
    return hashlib.blake2b(
        codec.encode([list(args), dict(sorted(kwargs.items()))]), digest_size=16
    ).hexdigest()


FOREVER = 10 * 365 * 24 * 3600.0  # ttl=None: as good as no expiry


def _seconds(store: Cache, ttl: float | EllipsisType | None) -> float:
    if ttl is None:
        return FOREVER
    if ttl is ...:
        default = getattr(getattr(store, "config", store), "default_ttl", None)
        return float(default) if default is not None else FOREVER
    return float(ttl)


def cached(
    cache: Cache | Callable[[], Cache],
    *,
    ttl: float | EllipsisType | None = ...,
    key_builder: Callable[..., str] | None = None,
    namespace: str | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """``cache`` may be a callable returning the cache, for a decorator applied at import time
    before the client exists."""

    def decorate(function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        prefix = namespace or f"cached:{function.__module__}.{function.__qualname__}"
        label = namespace or function.__qualname__
        flights: SingleFlight[Any] = SingleFlight()
        hit, miss = (
            CACHE_LOOKUPS.labels(cache=label, result="hit"),
            CACHE_LOOKUPS.labels(cache=label, result="miss"),
        )

        def resolve() -> Cache:
            return cache() if callable(cache) and not hasattr(cache, "get") else cache  # type: ignore[return-value]

        def key_of(*args: Any, **kwargs: Any) -> str:
            return f"{prefix}:{(key_builder or default_key)(*args, **kwargs)}"

        @functools.wraps(function)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            key = key_of(*args, **kwargs)

            async def read_or_load() -> Any:
                store = resolve()
                generation: str | None = None  # None: the read failed, so do not fill
                try:
                    read = await store.read_guarded(key)
                except CacheUnavailableError as error:
                    CACHE_ERRORS.labels(operation="read").inc()
                    logger.debug("cache read of %s failed: %s", key, error)
                except codec.CacheDecodeError as error:  # not ours (or damaged): overwrite it
                    logger.debug("unreadable cache entry %s replaced: %s", key, error)
                    generation = ""
                else:
                    if read.hit:
                        hit.inc()
                        return read.value
                    generation = read.generation
                miss.inc()
                value = await function(*args, **kwargs)
                if generation is not None:
                    try:  # refused when invalidate() ran during the load: the value may predate it
                        await store.fill_guarded(key, value, generation, ttl=_seconds(store, ttl))
                    except CacheUnavailableError as error:
                        CACHE_ERRORS.labels(operation="fill").inc()
                        logger.debug("cache fill of %s failed: %s", key, error)
                return value

            result: R = await flights.do(key, read_or_load)
            return result

        async def invalidate(*args: Any, **kwargs: Any) -> None:
            """Drop the entry these arguments would read, and refuse the fill of a load already
            running (it may have read the old state). The cache not answering is logged, not
            raised: the caller's change has happened."""
            try:
                await resolve().invalidate(key_of(*args, **kwargs))
            except CacheUnavailableError as error:
                CACHE_ERRORS.labels(operation="invalidate").inc()
                logger.warning("cache invalidation of %s failed: %s", key_of(*args, **kwargs), error)

        wrapper.invalidate = invalidate  # type: ignore[attr-defined]
        wrapper.cache_key = key_of  # type: ignore[attr-defined]
        return wrapper

    return decorate
