"""The in-memory twins on a fake clock (no sleeping): expiry, bounded size, leases and the sliding
window behave to the exact second."""

from __future__ import annotations

import math

from app.building_blocks.infrastructure.cache import MISSING, MemoryCache, MemoryRateLimiter, RateLimit


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def test_an_entry_lives_exactly_its_ttl() -> None:
    """Alive until its ttl has passed, gone at that instant; ``ttl()`` counts down to it."""
    clock = FakeClock()
    cache = MemoryCache(clock=clock)
    await cache.set("k", "v", ttl=10)

    clock.advance(9.5)
    assert await cache.get("k") == "v"
    assert await cache.ttl("k") == 0.5

    clock.advance(0.5)
    assert await cache.get("k", MISSING) is MISSING
    assert await cache.ttl("k") is None
    assert await cache.exists("k") == 0


async def test_the_default_ttl_applies_and_none_means_forever() -> None:
    clock = FakeClock()
    cache = MemoryCache(clock=clock, default_ttl=60)
    await cache.set("default", 1)
    await cache.set("forever", 1, ttl=None)

    assert await cache.ttl("default") == 60
    clock.advance(10**6)
    assert await cache.get("default", MISSING) is MISSING
    assert await cache.ttl("forever") == math.inf
    assert await MemoryCache(default_ttl=None).set("k", 1)


async def test_expire_restarts_the_lease_and_incr_keeps_it() -> None:
    clock = FakeClock()
    cache = MemoryCache(clock=clock)
    await cache.set("n", 1, ttl=5)

    clock.advance(4)
    assert await cache.expire("n", 5)
    assert await cache.incr("n") == 2
    assert await cache.ttl("n") == 5

    clock.advance(5)
    assert await cache.get("n", MISSING) is MISSING


async def test_a_full_cache_drops_expired_entries_first_then_the_oldest() -> None:
    """``max_entries`` bounds memory: expired entries go first; otherwise the oldest insertion."""
    clock = FakeClock()
    cache = MemoryCache(clock=clock, max_entries=3)
    await cache.set("old", 1, ttl=None)
    await cache.set("brief", 2, ttl=1)
    await cache.set("new", 3, ttl=None)
    clock.advance(2)

    await cache.set("fourth", 4)
    assert await cache.exists("old", "new", "fourth") == 3

    await cache.set("fifth", 5)
    assert await cache.get("old", MISSING) is MISSING
    assert await cache.exists("new", "fourth", "fifth") == 3

    await cache.set("new", 33)  # overwriting an entry evicts nothing
    assert await cache.exists("new", "fourth", "fifth") == 3


async def test_a_lease_runs_out_on_the_clock() -> None:
    """A memory lock's lease ends after ``timeout``; the former holder then frees nothing."""
    clock = FakeClock()
    cache = MemoryCache(clock=clock)
    first = cache.lock("job", timeout=10, blocking_timeout=0)
    second = cache.lock("job", timeout=10, blocking_timeout=0)
    assert await first.acquire()

    clock.advance(9.9)
    assert not await second.acquire()
    clock.advance(0.1)
    assert await second.acquire()

    assert not await first.release()
    assert await cache.lock("job", blocking_timeout=0).acquire() is False


async def test_the_window_slides_rather_than_resets() -> None:
    """``5/second`` with admissions at 0.0, 0.2, … 0.8: at 1.1 only the one from 0.0 has left, so
    exactly one more is admitted (a fixed window would admit five); ``reset_after`` is exact."""
    clock = FakeClock()
    limiter = MemoryRateLimiter(RateLimit(5, 1), clock=clock)
    for _ in range(5):
        assert (await limiter.hit("ip")).allowed
        clock.advance(0.2)
    clock.advance(0.1)  # now 1.1 after the first admission

    admitted = await limiter.hit("ip")
    denied = await limiter.hit("ip")

    assert admitted.allowed
    assert admitted.remaining == 0
    assert not denied.allowed
    assert math.isclose(denied.reset_after, 0.1)  # the admission from 0.2 leaves at 1.2
    assert denied.retry_after == 1


async def test_idle_keys_are_forgotten() -> None:
    """Past 10,000 keys, the logs of keys idle for a whole window are dropped: memory stays bounded."""
    clock = FakeClock()
    limiter = MemoryRateLimiter(RateLimit(1, 1), clock=clock)
    for index in range(10_001):
        await limiter.hit(f"ip-{index}")
    clock.advance(1)

    await limiter.hit("fresh")

    assert set(limiter._logs) == {"fresh"}
