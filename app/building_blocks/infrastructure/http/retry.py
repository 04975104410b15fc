"""When to try a call again, and how long to wait: policies over tenacity's waits.

Retried: connection errors, timeouts, and the answers that mean "not now" — 408, 429, 502, 503,
504 — honouring their ``Retry-After`` (seconds or an HTTP date, capped). Only idempotent methods
are retried, unless the call opts in or carries an ``Idempotency-Key``. A 500 is not retried: it
says the server failed at *this* request, and repeating it is as likely to repeat the failure.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from tenacity import wait_exponential_jitter, wait_fixed
from tenacity.wait import wait_base

RETRYABLE_STATUSES = frozenset({408, 429, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


@dataclass(frozen=True)
class RetryPolicy:
    """``max_retries`` attempts after the first; ``wait`` between them (tenacity's)."""

    max_retries: int = 0

    def wait(self) -> wait_base:
        return wait_fixed(0)


@dataclass(frozen=True)
class ExponentialBackoff(RetryPolicy):
    max_retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 10.0
    jitter: bool = True

    def wait(self) -> wait_base:
        return wait_exponential_jitter(
            multiplier=self.base_delay,
            max=self.max_delay,
            exp_base=2,
            jitter=self.base_delay if self.jitter else 0,
        )


@dataclass(frozen=True)
class FixedDelay(RetryPolicy):
    max_retries: int = 3
    delay: float = 1.0

    def wait(self) -> wait_base:
        return wait_fixed(self.delay)


@dataclass(frozen=True)
class NoRetry(RetryPolicy):
    max_retries: int = 0


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP date; ``None`` if absent
    or unreadable. A date in the past is 0."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
    return max(0.0, (when - current).total_seconds())
