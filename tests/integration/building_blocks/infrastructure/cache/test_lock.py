"""The lease lock, on Redis (two clients: two connection pools, as two processes would have) and
in memory: exclusive while held, never freed by a holder whose lease ran out, bounded waiting."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import pytest

from app.building_blocks.infrastructure.cache import (
    LeaseLock,
    LockNotAcquiredError,
    LockNotOwnedError,
    MemoryCache,
    RedisClient,
    RedisLock,
)
from tests.integration.building_blocks.infrastructure.cache.conftest import AnyCache, new_client
from tests.redis_service import unique_prefix


@pytest.fixture
async def redis_pair(redis_url: str) -> AsyncIterator[tuple[RedisClient, RedisClient]]:
    prefix = unique_prefix()
    first, second = new_client(redis_url, prefix), new_client(redis_url, prefix)
    yield first, second
    await first.clear()
    await first.close()
    await second.close()


@pytest.fixture(params=["redis", "memory"])
def contenders(request: pytest.FixtureRequest) -> tuple[AnyCache, AnyCache]:
    """Two handles on one lock space: two Redis clients (separate pools), or one memory cache twice."""
    if request.param == "redis":
        pair: tuple[RedisClient, RedisClient] = request.getfixturevalue("redis_pair")
        return pair
    memory = MemoryCache()
    return memory, memory


async def assert_held_by(lock: LeaseLock, contenders: tuple[AnyCache, AnyCache]) -> None:
    """``lock`` holds its name: a third party cannot take it, and (Redis) the key holds its token."""
    outsider = contenders[1].lock(lock.name, timeout=1, blocking_timeout=0)
    assert not await outsider.acquire()
    if isinstance(lock, RedisLock):
        client = contenders[0]
        assert isinstance(client, RedisClient)
        assert lock.token is not None
        assert await client.redis.get(client.key(lock.key)) == lock.token.encode()


async def test_two_contenders_are_never_inside_together(contenders: tuple[AnyCache, AnyCache]) -> None:
    """1,000 acquire/release cycles between two contenders: never both in the critical section,
    and the lock really changed hands (they contended, not took turns by luck)."""
    inside = 0
    holders: list[int] = []

    async def contend(who: int, cycles: int) -> None:
        nonlocal inside
        for _ in range(cycles):
            lock = contenders[who].lock("section", timeout=5, blocking_timeout=5)
            lock.poll = 0  # retry at every turn of the loop: the most contention there can be
            async with lock:
                inside += 1
                assert inside == 1
                holders.append(who)
                await asyncio.sleep(0)  # the other contender runs now: were it inside, we'd see it
                assert inside == 1
                inside -= 1
            await asyncio.sleep(0)

    await asyncio.gather(contend(0, 500), contend(1, 500))

    assert len(holders) == 1000
    handoffs = sum(before != after for before, after in itertools.pairwise(holders))
    assert handoffs >= 10


async def test_an_expired_holder_does_not_free_the_new_holders_lock(
    contenders: tuple[AnyCache, AnyCache],
) -> None:
    """A's lease runs out, B takes the lock: A's release returns False and B still holds it."""
    first = contenders[0].lock("job", timeout=0.2, blocking_timeout=0)
    second = contenders[1].lock("job", timeout=5, blocking_timeout=0)
    assert await first.acquire()
    assert not await second.acquire()  # held: A's lease still runs

    await asyncio.sleep(0.25)
    assert await second.acquire()

    assert not await first.release()
    assert not await first.extend()
    await assert_held_by(second, contenders)
    assert await second.extend()
    assert await second.release()
    assert await contenders[0].lock("job", blocking_timeout=0).acquire()  # and now it is free


async def test_leaving_a_section_whose_lease_was_lost_raises_not_owned(
    contenders: tuple[AnyCache, AnyCache],
) -> None:
    """``async with`` tells the holder its section was not exclusive (``LockNotOwnedError``)."""
    second = contenders[1].lock("job", timeout=5, blocking_timeout=0)

    async def outlive_the_lease() -> None:
        async with contenders[0].lock("job", timeout=0.1, blocking_timeout=0):
            await asyncio.sleep(0.15)
            assert await second.acquire()

    with pytest.raises(LockNotOwnedError):
        await outlive_the_lease()

    await assert_held_by(second, contenders)


async def test_waiting_past_blocking_timeout_gives_up(contenders: tuple[AnyCache, AnyCache]) -> None:
    """While another holds it: ``acquire()`` returns False and ``async with`` raises
    ``LockNotAcquiredError``, each after waiting ``blocking_timeout`` (not much longer)."""
    holder = contenders[0].lock("job", timeout=5)
    assert await holder.acquire()

    waiter = contenders[1].lock("job", timeout=5, blocking_timeout=0.2)
    started = time.monotonic()
    assert not await waiter.acquire()
    assert 0.2 <= time.monotonic() - started < 1.0
    assert waiter.token is None

    started = time.monotonic()
    with pytest.raises(LockNotAcquiredError):
        async with contenders[1].lock("job", timeout=5, blocking_timeout=0.2):
            pytest.fail("entered a section another holder has")
    assert 0.2 <= time.monotonic() - started < 1.0
    await assert_held_by(holder, contenders)


async def test_a_waiter_gets_the_lock_once_it_is_released(contenders: tuple[AnyCache, AnyCache]) -> None:
    """``blocking_timeout`` is a wait, not one attempt: the waiter enters when the holder leaves."""
    holder = contenders[0].lock("job", timeout=5)
    assert await holder.acquire()

    async def release_soon() -> None:
        await asyncio.sleep(0.1)
        assert await holder.release()

    releasing = asyncio.create_task(release_soon())
    async with contenders[1].lock("job", timeout=5, blocking_timeout=2) as waiter:
        assert releasing.done()
        await assert_held_by(waiter, contenders)
    await releasing


async def test_extend_keeps_the_lock_past_its_original_lease(contenders: tuple[AnyCache, AnyCache]) -> None:
    """Extended before it ran out, the lease outlives its first ``timeout``."""
    async with contenders[0].lock("job", timeout=0.3, blocking_timeout=0) as lock:
        await asyncio.sleep(0.2)
        assert await lock.extend()  # 0.3 s again from now
        await asyncio.sleep(0.2)  # 0.4 s since acquiring: past the original lease
        await assert_held_by(lock, contenders)
        assert await lock.extend(0.5)


async def test_a_lock_object_holds_once_and_releases_only_what_it_holds(cache: AnyCache) -> None:
    """Acquiring twice through one object is an error; releasing an unheld lock returns False."""
    lock = cache.lock("job", timeout=5, blocking_timeout=0)
    assert not await lock.release()
    assert not await lock.extend()
    assert await lock.acquire()
    with pytest.raises(RuntimeError, match="already held"):
        await lock.acquire()
    assert await lock.release()
    assert not await lock.release()
    with pytest.raises(ValueError, match="positive"):
        cache.lock("job", timeout=0)
