"""Redis as an optional dependency: fail over to the database, warn once, try again shortly.

After a failure the :class:`CacheAvailability` gate stays *open* for ``retry_after`` seconds: the
process goes straight to its fallback without touching Redis, so a dead (or black-holed) Redis
costs one socket timeout per window, not one per request. A warning is logged at most once per
window; every failure counts in ``app_cache_errors_total``. Invalidations that could not be sent
are kept (:meth:`remember_stale`) and sent before this process trusts the cache again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from app.building_blocks.observability.metrics import CACHE_ERRORS

logger = logging.getLogger("app.cache")

MAX_STALE_KEYS = 10_000


class CacheAvailability:
    def __init__(
        self,
        name: str = "redis",
        *,
        retry_after: float = 1.0,
        warn_every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.retry_after = retry_after
        self.warn_every = warn_every
        self._clock = clock
        self._open_until = 0.0
        self._last_warning = -float("inf")
        self._failing = False
        self.stale_keys: set[str] = set()
        self.stale_overflow = False  # more stale keys than kept: distrust the cache until healed

    @property
    def owes(self) -> bool:
        """Invalidations are owed (kept, or more than could be kept): entries may be stale."""
        return bool(self.stale_keys) or self.stale_overflow

    def should_try(self) -> bool:
        return self._clock() >= self._open_until

    def failed(self, operation: str, error: BaseException) -> None:
        CACHE_ERRORS.labels(operation=operation).inc()
        now = self._clock()
        self._open_until = now + self.retry_after
        self._failing = True
        if now - self._last_warning >= self.warn_every:
            self._last_warning = now
            logger.warning(
                "%s unavailable (%s: %s): reading from the database, limits fail open; retrying every %gs",
                self.name,
                operation,
                error,
                self.retry_after,
                extra={"cache": self.name, "operation": operation},
            )

    def succeeded(self) -> None:
        if self._failing:
            self._failing = False
            logger.info("%s available again", self.name, extra={"cache": self.name})

    def remember_stale(self, keys: tuple[str, ...]) -> None:
        if len(self.stale_keys) + len(keys) > MAX_STALE_KEYS:
            self.stale_overflow = True
        else:
            self.stale_keys.update(keys)
