"""A circuit breaker per target, shared by every client of that target in the process.

Closed: calls pass; ``failure_threshold`` consecutive failures open it. Open: calls fail at once
with :class:`CircuitOpenError` for ``open_seconds``. Half-open: up to ``half_open_max_calls``
probes pass at a time; a probe that succeeds closes it, one that fails opens it again.

A failure is what says the *target* is unwell: a transport error (refused, reset, timed out) or a
5xx. A 4xx never counts as one: it is the caller's request that was wrong, and a breaker opened by
404s would cut off a healthy service; an answer at all shows the target up, so it counts as a
success. Written here rather than taken from ``purgatory``: that one counts
exceptions only (a 503 answered would have to be raised inside it), lets every caller through
when half-open, and has not been released since 2024.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from app.building_blocks.infrastructure.http.errors import CircuitOpenError


class CircuitState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class CircuitBreakerConfig:
    failure_threshold: int = 5
    open_seconds: float = 30.0
    half_open_max_calls: int = 1


@dataclass
class CircuitBreaker:
    name: str
    config: CircuitBreakerConfig = field(default_factory=CircuitBreakerConfig)
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    _opened_at: float | None = None
    _probes: int = 0

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self.clock() - self._opened_at < self.config.open_seconds:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN

    def before_call(self) -> float | None:
        """Let the call through, or raise :class:`CircuitOpenError`. A half-open probe gets a
        ticket for :meth:`release_probe`; any other call ``None``."""
        state = self.state
        if state is CircuitState.CLOSED:
            return None
        if state is CircuitState.HALF_OPEN and self._probes < self.config.half_open_max_calls:
            self._probes += 1
            return self._opened_at
        assert self._opened_at is not None
        left = self.config.open_seconds - (self.clock() - self._opened_at)
        raise CircuitOpenError(self.name, retry_after=max(left, 1.0))

    def release_probe(self, ticket: float) -> None:
        """A probe ended without an outcome (cancelled, or failed before reaching the target):
        its place goes to the next caller. A no-op once its outcome was recorded."""
        if self._opened_at == ticket and self._probes > 0:
            self._probes -= 1

    def record_success(self, probe: float | None = None) -> None:
        """An answer: closes the breaker, unless it is open and this call was no probe of it (a
        slow call begun before it opened says nothing of the target now)."""
        if self._opened_at is not None and probe != self._opened_at:
            return
        self.failures = 0
        self._opened_at = None
        self._probes = 0

    def record_failure(self) -> None:
        if self._opened_at is not None:  # a probe failed (or a call begun before it opened)
            self._opened_at = self.clock()
            self._probes = 0
            return
        self.failures += 1
        if self.failures >= self.config.failure_threshold:
            self._opened_at = self.clock()
            self._probes = 0


class CircuitBreakers:
    """The breakers of one process, by target name: every client of a target shares one."""

    def __init__(self) -> None:
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, name: str, config: CircuitBreakerConfig | None = None) -> CircuitBreaker:
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = self._breakers[name] = CircuitBreaker(name, config or CircuitBreakerConfig())
        return breaker

    def clear(self) -> None:
        self._breakers.clear()


BREAKERS = CircuitBreakers()
