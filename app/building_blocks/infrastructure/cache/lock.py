"""A lock that is a lease: exclusive while its lease runs, and never freed by a former holder.

Each acquisition has its own random token. Acquiring is ``SET key token NX PX lease``; releasing
and extending are Lua that act only if the key still holds *this* token, so a holder whose lease
ran out (and whose lock another contender now holds) frees nothing (:class:`LockNotOwnedError`
on exit tells it its section was not exclusive).

Why a lease and not a guarantee: one Redis holds the lock. If it fails over to a replica that had
not yet received the ``SET``, or the holder pauses (GC, a stopped VM) past its lease, two holders
can overlap. Use it to avoid duplicate *work* (one cache loader, one report run), never where
overlap corrupts data; there, the database decides (row locks, unique constraints, versions), as
this service does for every write.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Self

from app.building_blocks.infrastructure.cache.base import seconds_to_ms
from app.building_blocks.infrastructure.cache.errors import LockNotAcquiredError, LockNotOwnedError

if TYPE_CHECKING:
    from app.building_blocks.infrastructure.cache.client import RedisClient

logger = logging.getLogger("app.cache")


class LeaseLock(ABC):
    """``timeout``: the lease (seconds the lock lives unless extended); ``blocking_timeout``: how
    long :meth:`acquire` waits for it (``None``: forever, ``0``: one attempt)."""

    def __init__(
        self, name: str, *, timeout: float = 10.0, blocking_timeout: float | None = 10.0, poll: float = 0.05
    ) -> None:
        if timeout <= 0:
            raise ValueError("a lock's lease (timeout) must be positive")
        self.name = name
        self.timeout = timeout
        self.blocking_timeout = blocking_timeout
        self.poll = poll
        self.token: str | None = None

    @abstractmethod
    async def _try_acquire(self, token: str) -> bool: ...

    @abstractmethod
    async def _release(self, token: str) -> bool: ...

    @abstractmethod
    async def _extend(self, token: str, timeout: float) -> bool: ...

    async def acquire(self) -> bool:
        """Take the lock, waiting up to ``blocking_timeout``; ``False`` if it stayed taken."""
        if self.token is not None:
            raise RuntimeError(f"lock {self.name!r} is already held by this object")
        token = secrets.token_hex(16)
        deadline = None if self.blocking_timeout is None else time.monotonic() + self.blocking_timeout
        while True:
            if await self._try_acquire(token):
                self.token = token
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            pause = self.poll * random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not secrecy
            await asyncio.sleep(pause if left is None else min(pause, left))

    async def release(self) -> bool:
        """Free the lock if this holder still has it; ``False`` if its lease had run out."""
        token, self.token = self.token, None
        return token is not None and await self._release(token)

    async def extend(self, timeout: float | None = None) -> bool:
        """Restart the lease (``timeout`` or the original) from now, if still held."""
        return self.token is not None and await self._extend(self.token, timeout or self.timeout)

    async def __aenter__(self) -> Self:
        if not await self.acquire():
            raise LockNotAcquiredError(f"lock {self.name!r} still taken after {self.blocking_timeout}s")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        try:
            released = await self.release()
        except Exception:
            if exc_type is None:
                raise
            return  # the section's own error goes on, not the release's
        if not released and exc_type is None:
            raise LockNotOwnedError(f"lock {self.name!r}: the lease ran out before the section ended")


class RedisLock(LeaseLock):
    def __init__(self, client: RedisClient, name: str, **kwargs: float | None) -> None:
        super().__init__(name, **kwargs)  # type: ignore[arg-type]
        self._client = client
        self.key = f"lock:{name}"

    async def _try_acquire(self, token: str) -> bool:
        return await self._client.set_raw(self.key, token, px=seconds_to_ms(self.timeout), nx=True)

    async def _release(self, token: str) -> bool:
        return bool(await self._client.execute_script("_lock_release", [self.key], [token]))

    async def _extend(self, token: str, timeout: float) -> bool:
        args = [token, seconds_to_ms(timeout)]
        return bool(await self._client.execute_script("_lock_extend", [self.key], args))
