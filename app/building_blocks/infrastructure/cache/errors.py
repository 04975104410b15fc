"""What the cache building blocks raise."""

from __future__ import annotations


class CacheUnavailableError(ConnectionError):
    """Redis did not answer in time (down, unreachable, pool exhausted): fall back, do not fail."""


class LockNotAcquiredError(TimeoutError):
    """Another holder kept the lock for the whole wait."""


class LockNotOwnedError(RuntimeError):
    """The lock's lease ran out and another holder may have it: the critical section was not exclusive."""
