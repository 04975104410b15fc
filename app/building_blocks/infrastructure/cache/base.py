"""The cache as the rest of the code sees it: Redis in full mode, process memory when embedded.

:class:`~.client.RedisClient` and :class:`~.memory.MemoryCache` both implement :class:`Cache`, so
the decorator, the service's read cache, the lock and the rate limiter run on either.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import EllipsisType
from typing import Any, Protocol, Self, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

TTL = float | None | EllipsisType
"""Seconds a value lives; ``None``: until deleted; ``...`` (the default): the configured default."""


class _Missing:
    """The ``default`` that tells a miss from a cached ``None``."""

    _instance: _Missing | None = None

    def __new__(cls) -> Self:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance  # type: ignore[return-value]

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


@dataclass(frozen=True)
class GuardedRead:
    """A cache-aside read: the value (or :data:`MISSING`) and the key's generation when read.

    Fill the entry only with the same ``generation`` (:meth:`Cache.fill_guarded`): a change of
    the key's source in between (:meth:`Cache.invalidate`) refuses the fill, so a value loaded
    before a commit can never land in the cache after that commit's invalidation.
    """

    value: Any
    generation: str

    @property
    def hit(self) -> bool:
        return self.value is not MISSING


class Lock(Protocol):
    """A lease on a name: exclusive while its lease runs (see :mod:`.lock`)."""

    async def acquire(self) -> bool: ...

    async def release(self) -> bool: ...

    async def extend(self, timeout: float | None = None) -> bool: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None: ...


class Cache(Protocol):
    """Typed values under (prefixed) keys, guarded cache-aside entries and locks."""

    async def get(self, key: str, default: Any = None, *, model: type[M] | None = None) -> Any: ...

    async def set(
        self, key: str, value: Any, *, ttl: TTL = ..., nx: bool = False, xx: bool = False
    ) -> bool: ...

    async def delete(self, *keys: str) -> int: ...

    async def exists(self, *keys: str) -> int: ...

    async def expire(self, key: str, ttl: float) -> bool: ...

    async def ttl(self, key: str) -> float | None: ...

    async def incr(self, key: str, amount: int = 1) -> int: ...

    async def read_guarded(self, key: str, *, model: type[M] | None = None) -> GuardedRead: ...

    async def fill_guarded(self, key: str, value: Any, generation: str, *, ttl: float) -> bool: ...

    async def invalidate(self, *keys: str) -> None: ...

    async def clear(self, under: str = "") -> int:
        """Delete every key of this cache (its prefix), or of one namespace of it (``under``)."""
        ...

    def lock(self, name: str, *, timeout: float = 10.0, blocking_timeout: float | None = 10.0) -> Lock: ...

    async def ping(self) -> bool: ...


def seconds_to_ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
