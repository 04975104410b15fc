"""The embedded twin of :class:`~.client.RedisClient`: the same :class:`~.base.Cache` in process memory.

For ``make run`` without Redis (one process): values go through the same codec (so a cached
object is a copy, and types round-trip exactly as with Redis), expire on the same clock rules,
and the lock and guarded fills behave the same. Nothing is shared between processes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from app.building_blocks.infrastructure.cache import codec
from app.building_blocks.infrastructure.cache.base import MISSING, TTL, GuardedRead, M
from app.building_blocks.infrastructure.cache.lock import LeaseLock

GENERATION_TTL = 3600.0


class MemoryCache:
    def __init__(
        self,
        *,
        default_ttl: float | None = 3600,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.default_ttl = default_ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[bytes, float | None]] = {}

    def describe(self) -> str:
        return "process memory"

    def _live(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        raw, expires = entry
        if expires is not None and expires <= self._clock():
            del self._entries[key]
            return None
        return raw

    def _store(self, key: str, raw: bytes, seconds: float | None) -> None:
        if key not in self._entries and len(self._entries) >= self.max_entries:
            self._evict()
        self._entries[key] = (raw, None if seconds is None else self._clock() + seconds)

    def _evict(self) -> None:
        now = self._clock()
        expired = [
            key for key, (_, expires) in self._entries.items() if expires is not None and expires <= now
        ]
        for key in expired:
            del self._entries[key]
        if len(self._entries) >= self.max_entries:  # still full: drop the oldest insertion
            del self._entries[next(iter(self._entries))]

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._entries.clear()

    async def clear(self, under: str = "") -> int:
        doomed = [key for key in self._entries if key.startswith(under)]
        for key in doomed:
            del self._entries[key]
        return len(doomed)

    async def get(self, key: str, default: Any = None, *, model: type[M] | None = None) -> Any:
        raw = self._live(key)
        return default if raw is None else codec.decode(raw, model)

    async def set(self, key: str, value: Any, *, ttl: TTL = ..., nx: bool = False, xx: bool = False) -> bool:
        raw = codec.encode(value)
        present = self._live(key) is not None
        if (nx and present) or (xx and not present):
            return False
        self._store(key, raw, self.default_ttl if ttl is ... else ttl)
        return True

    async def delete(self, *keys: str) -> int:
        return sum(self._entries.pop(key, None) is not None for key in keys if self._live(key) is not None)

    async def exists(self, *keys: str) -> int:
        return sum(self._live(key) is not None for key in keys)

    async def expire(self, key: str, ttl: float) -> bool:
        raw = self._live(key)
        if raw is None:
            return False
        self._entries[key] = (raw, self._clock() + ttl)
        return True

    async def ttl(self, key: str) -> float | None:
        if self._live(key) is None:
            return None
        expires = self._entries[key][1]
        return math.inf if expires is None else max(0.0, expires - self._clock())

    async def incr(self, key: str, amount: int = 1) -> int:
        raw = self._live(key)
        value = (0 if raw is None else codec.decode(raw)) + amount
        expires = self._entries[key][1] if raw is not None else None
        self._entries[key] = (str(value).encode(), expires)
        return int(value)

    def _generation_key(self, key: str) -> str:
        return f"{key}#generation"

    async def read_guarded(self, key: str, *, model: type[M] | None = None) -> GuardedRead:
        raw = self._live(key)
        generation = self._live(self._generation_key(key))
        value = MISSING if raw is None else codec.decode(raw, model)
        return GuardedRead(value, generation.decode() if generation is not None else "")

    async def fill_guarded(self, key: str, value: Any, generation: str, *, ttl: float) -> bool:
        current = self._live(self._generation_key(key))
        if (current.decode() if current is not None else "") != generation:
            return False
        self._store(key, codec.encode(value), ttl)
        return True

    async def invalidate(self, *keys: str) -> None:
        for key in keys:
            generation = self._generation_key(key)
            current = self._live(generation)
            self._store(generation, str(int(current or b"0") + 1).encode(), GENERATION_TTL)
            self._entries.pop(key, None)

    def lock(self, name: str, *, timeout: float = 10.0, blocking_timeout: float | None = 10.0) -> MemoryLock:
        return MemoryLock(self, name, timeout=timeout, blocking_timeout=blocking_timeout)


class MemoryLock(LeaseLock):
    def __init__(self, cache: MemoryCache, name: str, **kwargs: float | None) -> None:
        super().__init__(name, **kwargs)  # type: ignore[arg-type]
        self._cache = cache
        self.key = f"lock:{name}"

    async def _try_acquire(self, token: str) -> bool:
        if self._cache._live(self.key) is not None:
            return False
        self._cache._store(self.key, token.encode(), self.timeout)
        return True

    async def _release(self, token: str) -> bool:
        if self._cache._live(self.key) != token.encode():
            return False
        del self._cache._entries[self.key]
        return True

    async def _extend(self, token: str, timeout: float) -> bool:
        if self._cache._live(self.key) != token.encode():
            return False
        self._cache._store(self.key, token.encode(), timeout)
        return True
