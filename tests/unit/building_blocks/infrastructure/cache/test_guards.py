"""The decorator's invalidation guard and the lock's exit, on the in-memory twin (no I/O)."""

from __future__ import annotations

import asyncio

import pytest

from app.building_blocks.infrastructure.cache import MemoryCache, cached


async def test_a_load_running_when_invalidate_is_called_does_not_store_its_old_value() -> None:
    cache = MemoryCache()
    row = {"name": "old"}
    loading, release = asyncio.Event(), asyncio.Event()

    @cached(cache, ttl=60)
    async def load(user_id: int) -> dict[str, str]:
        value = dict(row)  # read now...
        loading.set()
        await release.wait()  # ...returned later
        return value

    slow = asyncio.create_task(load(1))
    await loading.wait()
    row["name"] = "new"  # the change commits...
    await load.invalidate(1)  # type: ignore[attr-defined]  # ...and drops the entry
    release.set()
    assert (await slow)["name"] == "old"  # its own caller gets what it read
    assert (await load(1))["name"] == "new"  # but it was not stored: the next call loads again


async def test_a_section_that_fails_after_losing_its_lease_raises_its_own_error() -> None:
    """The lock's exit never replaces the section's exception with its own."""
    clock = [0.0]
    cache = MemoryCache(clock=lambda: clock[0])

    async def section() -> None:
        async with cache.lock("job", timeout=1):
            clock[0] = 5.0  # the lease ran out meanwhile
            raise KeyError("the section's")

    with pytest.raises(KeyError, match="the section's"):
        await section()
