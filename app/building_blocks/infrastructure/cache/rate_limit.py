"""Rate limits as a sliding-window log: at most ``limit`` admissions in any window of ``period``.

Why a sliding log and not GCRA or a token bucket: a limit written as ``20/minute`` is read as
"never more than 20 in a minute", and only the log keeps exactly that for every window (a fixed
window lets 2x through across its edge; GCRA/token buckets admit a burst and then refill, so a
minute can hold up to ~2x too). It also gives exact answers for the headers: what remains, and
when the oldest admission leaves the window. Its cost is memory: one sorted-set entry per
admission still inside the window, per client — small for limits like these (tens per minute);
for thousands per second per client a GCRA would be the better trade.

Redis: one Lua call (:data:`~.scripts.SLIDING_WINDOW`) on the server's clock, so every process
shares one window. Embedded: :class:`MemoryRateLimiter`, the same rule in process memory.
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from app.building_blocks.infrastructure.cache.client import RedisClient
from app.building_blocks.infrastructure.cache.scripts import SLIDING_WINDOW

_PERIODS = {"second": 1, "minute": 60, "hour": 3600}
_FORMAT = re.compile(r"\s*(\d+)\s*/\s*(second|minute|hour)s?\s*", re.IGNORECASE)


@dataclass(frozen=True)
class RateLimit:
    limit: int
    period: float  # seconds

    @classmethod
    def parse(cls, text: str) -> RateLimit | None:
        """``"20/minute"`` (also ``second``, ``hour``); ``"0"`` (or ``0/…``): no limit → ``None``."""
        if text.strip() == "0":
            return None
        match = _FORMAT.fullmatch(text)
        if match is None:
            raise ValueError(f"a rate limit is N/second, N/minute or N/hour (0: off), not {text!r}")
        limit = int(match.group(1))
        return cls(limit, _PERIODS[match.group(2).lower()]) if limit else None

    def __str__(self) -> str:
        unit = {period: name for name, period in _PERIODS.items()}.get(int(self.period))
        return f"{self.limit}/{unit}" if unit else f"{self.limit}/{self.period:g}s"


@dataclass(frozen=True)
class RateLimitDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_after: float  # seconds until the oldest admission leaves the window (a slot frees)
    period: float

    @property
    def retry_after(self) -> int:
        """Whole seconds to wait before a denied request can pass (``Retry-After``)."""
        return max(1, math.ceil(self.reset_after))


class RateLimiter(Protocol):
    rate: RateLimit

    async def hit(self, key: str) -> RateLimitDecision:
        """Count one request of ``key`` if the window has room; say what is left either way."""
        ...


class RedisRateLimiter:
    def __init__(self, client: RedisClient, rate: RateLimit, *, name: str = "default") -> None:
        self.client = client
        self.rate = rate
        self.name = name
        client.register_script("_sliding_window", SLIDING_WINDOW)

    async def hit(self, key: str) -> RateLimitDecision:
        allowed, remaining, reset_us = await self.client.execute_script(
            "_sliding_window",
            [f"ratelimit:{self.name}:{key}"],
            [self.rate.limit, round(self.rate.period * 1000), secrets.token_hex(8)],
        )
        return RateLimitDecision(
            allowed=bool(allowed),
            limit=self.rate.limit,
            remaining=max(0, int(remaining)),
            reset_after=max(0.0, int(reset_us) / 1_000_000),
            period=self.rate.period,
        )


class MemoryRateLimiter:
    """The same sliding log per key, in this process (embedded mode). Idle keys are forgotten."""

    def __init__(
        self, rate: RateLimit, *, name: str = "default", clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.name = name
        self._clock = clock
        self._logs: dict[str, deque[float]] = {}
        self._lock = asyncio.Lock()

    async def hit(self, key: str) -> RateLimitDecision:
        now = self._clock()
        log = self._logs.setdefault(key, deque())
        while log and log[0] <= now - self.rate.period:
            log.popleft()
        allowed = len(log) < self.rate.limit
        if allowed:
            log.append(now)
        if len(self._logs) > 10_000:
            self._forget_idle(now)
        reset = log[0] + self.rate.period - now if log else self.rate.period
        return RateLimitDecision(
            allowed, self.rate.limit, self.rate.limit - len(log), reset, self.rate.period
        )

    def _forget_idle(self, now: float) -> None:
        idle = [key for key, log in self._logs.items() if not log or log[-1] <= now - self.rate.period]
        for key in idle:
            del self._logs[key]
